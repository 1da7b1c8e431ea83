"""Sessions read straight from Django's database store
(executions/sessionrows.py): the same answers as Django's own API, in fewer
queries, and Django's API wherever another store or backend decides."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import permissions, sessionrows, sessions

pytestmark = pytest.mark.django_db

VIEW = "executions.view_execution"


def _session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_the_bulk_check_answers_as_djangos_own_does(
    make_user, settings, django_user_model
):
    """One trip's three queries, and one socket's single query, give each
    session the answer that Django's `get_user` and `has_perm`, one session
    at a time, give it."""
    viewer = make_user("view")
    other = make_user("view")
    nobody = make_user()
    inactive = make_user("view")
    boss = make_user(is_superuser=True)
    keys = []
    for user in (viewer, other, nobody, inactive, boss):
        keys.append((_session_of(user), user.pk))
    keys.append((_session_of(viewer), other.pk))  # someone else's session
    keys.append(("no-such-session", viewer.pk))
    keys.append((None, viewer.pk))
    changed = _session_of(other)  # then the password changes elsewhere
    other.set_password("a new one")
    other.save()
    keys.append((changed, other.pk))
    inactive.is_active = False
    inactive.save()
    expired = _session_of(viewer)
    from django.contrib.sessions.models import Session

    Session.objects.filter(pk=expired).update(expire_date=timezone.now())
    keys.append((expired, viewer.pk))

    with CaptureQueriesContext(connection) as queries:
        bulk = sessionrows.in_bulk(keys, VIEW)
    assert len(queries) == 3
    alone = {}
    for key in keys:
        with CaptureQueriesContext(connection) as queries:
            alone[key] = sessions.socket_user(*key)
        assert len(queries) <= 1  # none without a session key

    def djangos(session_key, user_id):
        """Django's own answer: its session store, `get_user`, `has_perm`."""
        user = sessions.session_user(session_key)
        if not user.is_authenticated or user.pk != user_id:
            return None, False
        return user.pk, user.has_perm("executions.view_execution")

    def plain(answers):
        return {key: (user and user.pk, can) for key, (user, can) in answers.items()}

    expected = {key: djangos(*key) for key in keys}
    assert plain(bulk) == expected
    assert {key: user and user.pk for key, user in alone.items()} == {
        key: pk for key, (pk, _) in expected.items()
    }
    assert plain(bulk)[keys[0]] == (viewer.pk, True)
    assert plain(bulk)[keys[2]] == (nobody.pk, False)
    assert plain(bulk)[keys[4]] == (boss.pk, True)


def test_other_session_stores_and_backends_are_left_to_django(make_user, settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    assert sessionrows.store() is None
    assert sessionrows.in_bulk([("key", 1)], VIEW) is None
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "django.contrib.auth.backends.RemoteUserBackend",
    ]
    assert sessionrows.store() is None
    assert sessionrows.in_bulk([("key", 1)], VIEW) is None


def test_a_sockets_check_reads_the_users_permissions_in_the_same_query(make_user):
    """What the socket's one query keeps on the user is what ModelBackend
    reads for them, their own and their groups', and `has_perm` asks the
    database nothing more; a user with none holds none."""
    from django.contrib.auth.models import Group, Permission

    own = make_user("view", "interrupt")
    grouped = make_user()
    team = Group.objects.create(name="ops")
    team.permissions.add(
        *Permission.objects.filter(
            codename__in=["view_execution", "add_execution"],
            content_type__app_label="executions",
        )
    )
    grouped.groups.add(team)
    both = make_user("interrupt")
    both.groups.add(team)
    nothing = make_user()

    for user in (own, grouped, both, nothing):
        key = _session_of(user)
        with CaptureQueriesContext(connection) as queries:
            checked = sessions.socket_user(key, user.pk)
            held = checked.get_all_permissions()
            checked.has_perm("executions.interrupt_execution")
        assert len(queries) == 1, [query["sql"] for query in queries]
        fresh = type(user).objects.get(pk=user.pk)
        assert held == fresh.get_all_permissions()
        assert checked.last_login == fresh.last_login  # converted, as the ORM does
        assert checked.is_active is True
    assert (
        sessions.socket_user(_session_of(nothing), nothing.pk).has_perm(VIEW) is False
    )


def test_a_sockets_check_leaves_superusers_and_the_inactive_to_django(make_user):
    """An active superuser holds every permission whatever rows they have:
    nothing is kept for them. An inactive user's session no longer stands,
    as `get_user` answers."""
    boss = make_user("view", is_superuser=True)
    key = _session_of(boss)
    checked = sessions.socket_user(key, boss.pk)
    assert not hasattr(checked, "_perm_cache")
    assert checked.has_perm("executions.interrupt_execution")
    viewer = make_user("view")
    key = _session_of(viewer)
    type(viewer).objects.filter(pk=viewer.pk).update(is_active=False)
    assert sessions.socket_user(key, viewer.pk) is None  # as get_user answers


def test_a_user_model_without_djangos_permissions_has_no_permission_query():
    from django.contrib.sessions.models import Session

    assert permissions.statement(Session, connection) is None
