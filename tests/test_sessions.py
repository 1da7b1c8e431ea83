"""Sessions on sockets (executions/sessions.py): a logout, a password change
or a lost permission reaches an open socket."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client

from executions import sessions
from executions.models import Status
from executions.runtime import broadcast, groups
from executions.sessions import user_group
from peace_site.asgi import application
from tests.factories import execution
from tests.sockets import ORIGIN, TIMEOUT, close_code, receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@database_sync_to_async
def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def open_socket(path: str, client: Client) -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(
        application,
        path,
        headers=[(b"host", b"testserver"), (b"origin", ORIGIN), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    await receive(communicator)  # the snapshot
    return communicator


def test_user_group_is_a_valid_group_name():
    for user_id in (1, "ada:lovelace/../x", "é" * 300):
        name = user_group(user_id)

        assert len(name) < 100
        assert name.replace(".", "").replace("-", "").replace("_", "").isalnum()
        assert name.isascii()
        assert ":" not in name


@pytest.mark.parametrize("path", ["/ws/executions/", "/ws/executions/{}/"])
async def test_logout_closes_that_sessions_sockets_only(make_user, path):
    user = await database_sync_to_async(make_user)("view", "interrupt")
    running = await database_sync_to_async(execution)(Status.RUNNING)
    leaving, staying = await logged_in(user), await logged_in(user)
    closed = await open_socket(path.format(running.pk), leaving)
    kept = await open_socket(path.format(running.pk), staying)

    await database_sync_to_async(leaving.post)("/accounts/logout/")

    assert await close_code(closed) == 4401
    await kept.send_json_to({"type": "ping"})
    assert await receive(kept) == {"type": "pong"}
    await closed.disconnect()
    await kept.disconnect()


async def test_password_change_elsewhere_stops_the_sockets_actions(make_user):
    user = await database_sync_to_async(make_user)("view", "interrupt")
    running = await database_sync_to_async(execution)(Status.RUNNING)
    communicator = await open_socket(
        f"/ws/executions/{running.pk}/", await logged_in(user)
    )

    user.set_password("a new one")
    await user.asave(update_fields=["password"])
    await communicator.send_json_to({"type": "interrupt", "force": True})

    assert await close_code(communicator) == 4401
    await running.arefresh_from_db()
    assert running.status == Status.RUNNING
    await communicator.disconnect()


async def test_lost_view_permission_stops_the_next_event(make_user, monkeypatch):
    # Every event re-checks here; the consumer caches the answer for a second.
    monkeypatch.setattr("executions.sessions.RECHECK_INTERVAL", 0)
    user = await database_sync_to_async(make_user)("view")
    running = await database_sync_to_async(execution)(Status.RUNNING)
    communicator = await open_socket("/ws/executions/", await logged_in(user))

    await database_sync_to_async(user.user_permissions.remove)(
        await Permission.objects.aget(codename="view_execution")
    )
    await broadcast.status_changed(running.snapshot(), groups.STATUS)

    assert await close_code(communicator) == 4403
    await communicator.disconnect()


async def test_sockets_of_one_session_share_its_recheck(monkeypatch):
    trips = []

    async def standings(keys):
        trips.append(keys)
        await asyncio.sleep(0.01)
        return {key: ("alice", True) for key in keys}

    monkeypatch.setattr(sessions, "_standings", standings)
    checks = sessions.Standings()

    together = await asyncio.gather(*(checks.check("s1", 1) for _ in range(50)))
    later = await checks.check("s1", 1)
    other = await checks.check("s2", 1)

    assert together == [("alice", True)] * 50
    assert (later, other) == (("alice", True), ("alice", True))
    assert trips == [[("s1", 1)], [("s2", 1)]]


async def test_sessions_due_together_take_one_trip(monkeypatch):
    """300 watchers with a session each: the checks that come due while one
    trip is in flight go in the next, not a trip each."""
    trips = []

    async def standings(keys):
        trips.append(len(keys))
        await asyncio.sleep(0.01)
        return {key: (f"user-{key[1]}", key[1] % 2 == 0) for key in keys}

    monkeypatch.setattr(sessions, "_standings", standings)
    checks = sessions.Standings()

    first = asyncio.ensure_future(checks.check("s0", 0))
    await asyncio.sleep(0)
    answers = await asyncio.gather(*(checks.check(f"s{n}", n) for n in range(1, 300)))

    assert await first == ("user-0", True)
    assert answers == [(f"user-{n}", n % 2 == 0) for n in range(1, 300)]
    assert trips == [1, 299]


async def test_sessions_checked_at_different_times_fall_into_step(monkeypatch):
    """Each trip takes along the answers in use past a quarter of their life,
    so sockets whose checks began apart share trips from then on; an answer
    nobody has checked for a whole life is not refreshed."""
    trips = []
    clock = [100.0]
    monkeypatch.setattr(sessions.time, "monotonic", lambda: clock[0])

    async def standings(keys):
        trips.append(sorted(keys))
        return {key: ("alice", True) for key in keys}

    async def at(offset: float, *keys: str) -> None:
        clock[0] = 100.0 + offset * sessions.RECHECK_INTERVAL
        for key in keys:
            await checks.check(key, 1)
        await asyncio.sleep(0)  # a refresh in the background takes its trip

    monkeypatch.setattr(sessions, "_standings", standings)
    checks = sessions.Standings()
    await at(0, "s1", "gone")  # the socket of "gone" closes after this
    await at(0.2, "s2")
    await at(0.55, "s1", "s2")  # s1 past half its life: s2 and gone along
    await at(1.1, "s1", "s2")  # gone unchecked for a life: left out

    s1, s2, gone = ("s1", 1), ("s2", 1), ("gone", 1)
    assert trips == [[s1], [gone], [s2], [gone, s1, s2], [s1, s2]]


async def test_a_failed_trip_fails_its_checks_and_the_next_asks_again(monkeypatch):
    answers = iter([RuntimeError("database down"), ("alice", True)])

    async def standings(keys):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return {key: answer for key in keys}

    monkeypatch.setattr(sessions, "_standings", standings)
    checks = sessions.Standings()

    with pytest.raises(RuntimeError, match="database down"):
        await checks.check("s1", 1)
    assert await checks.check("s1", 1) == ("alice", True)


async def test_an_answer_past_half_its_life_is_refreshed_without_waiting(
    monkeypatch,
):
    trips = []
    clock = [100.0]
    monkeypatch.setattr(sessions.time, "monotonic", lambda: clock[0])

    async def standings(keys):
        trips.append(keys)
        return {key: ("alice", len(trips) == 1) for key in keys}

    monkeypatch.setattr(sessions, "_standings", standings)
    checks = sessions.Standings()
    assert await checks.check("s1", 1) == ("alice", True)

    clock[0] += sessions.RECHECK_INTERVAL * 0.6
    # Still the answer it has, at once; the refresh goes in the background.
    assert await checks.check("s1", 1) == ("alice", True)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(trips) == 2
    # The refreshed answer (the permission is gone) is the next one used.
    assert await checks.check("s1", 1) == ("alice", False)

    clock[0] += sessions.RECHECK_INTERVAL
    # Past its life: waited for.
    assert await checks.check("s1", 1) == ("alice", False)
    assert len(trips) == 3


async def test_one_permission_check_per_user_in_a_trip(make_user, monkeypatch):
    alice = await database_sync_to_async(make_user)("view")
    keys = []
    for _ in range(3):
        client = await logged_in(alice)
        keys.append((client.cookies["sessionid"].value, alice.pk))
    checked = []
    # One by one, as with a session store or backend other than Django's own.
    monkeypatch.setattr(sessions.sessionrows, "in_bulk", lambda keys, permission: None)
    can = sessions.services.can
    monkeypatch.setattr(
        sessions.services,
        "can",
        lambda user, action: checked.append(user.pk) or can(user, action),
    )

    answers = await sessions._standings(keys)

    assert [answers[key][1] for key in keys] == [True, True, True]
    assert checked == [alice.pk]


async def test_a_recheck_reads_the_session_as_django_does(make_user):
    alice = await database_sync_to_async(make_user)("view")
    client = await logged_in(alice)
    key = client.cookies["sessionid"].value

    answers = await sessions._standings(
        [(key, alice.pk), (key, alice.pk + 1), ("gone", alice.pk)]
    )

    user, can_view = answers[(key, alice.pk)]
    assert (user.pk, can_view) == (alice.pk, True)
    assert answers[(key, alice.pk + 1)] == (None, False)
    assert answers[("gone", alice.pk)] == (None, False)


@pytest.mark.django_db(transaction=False)
def test_a_socket_on_another_session_store_is_checked_through_it(make_user, settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    alice = make_user("view")
    client = Client()
    client.force_login(alice)
    key = client.cookies["sessionid"].value

    assert sessions.socket_user(key, alice.pk).pk == alice.pk
    assert sessions.socket_user(key, alice.pk + 1) is None
    client.logout()
    assert sessions.socket_user(key, alice.pk) is None
