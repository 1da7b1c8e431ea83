"""Sessions read straight from Django's database store
(executions/sessionrows.py): the same answers as Django's own API, in fewer
queries, and Django's API wherever another store or backend decides."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import sessionrows, sessions

pytestmark = pytest.mark.django_db

VIEW = "executions.view_execution"


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

    def session_of(user) -> str:
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    for user in (viewer, other, nobody, inactive, boss):
        keys.append((session_of(user), user.pk))
    keys.append((session_of(viewer), other.pk))  # someone else's session
    keys.append(("no-such-session", viewer.pk))
    keys.append((None, viewer.pk))
    changed = session_of(other)  # then the password changes elsewhere
    other.set_password("a new one")
    other.save()
    keys.append((changed, other.pk))
    inactive.is_active = False
    inactive.save()
    expired = session_of(viewer)
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
