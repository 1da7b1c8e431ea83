"""Who may do what, at every door: the view / add / interrupt matrix for the
pages, the JSON API, the websocket and the admin; login everywhere; CSRF on
every POST; the websocket's origin check; and permissions read afresh when a
long-lived socket asks for something; and a user's permissions read in one
query, as Django's model backend would answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser, Group, Permission
from django.contrib.messages import get_messages
from django.test import Client

from executions import permissions, services
from executions.models import Execution, Source, Status
from tests.factories import execution, table
from tests.sockets import close_code, ping, receive, socket

pytestmark = pytest.mark.django_db

ACTIONS = ("view", "add", "interrupt")
ADMIN = "/admin/executions/execution/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def targets() -> dict[str, Execution]:
    """What each door acts on: a running execution, and one to resume."""
    return {
        "running": execution(Status.RUNNING),
        "resumable": execution(Status.INTERRUPTED),
    }


@dataclass(frozen=True)
class Door:
    """One HTTP door onto one action."""

    action: str
    method: str
    url: str
    data: Any = None
    #: The status code it answers a permitted user.
    allowed: int = 200
    #: Other actions it needs besides its own (pages and the admin show
    #: executions, so they need `view` as well).
    also: tuple[str, ...] = ()
    #: A resume acts on an interrupted execution; the rest on a running one.
    target: str = "running"

    @property
    def kind(self) -> str:
        return self.url.split("/")[1]  # api, executions (a page) or admin

    def request(self, client: Client, targets: dict[str, Execution]):
        url = self.url.format(targets[self.target].pk)
        if self.kind == "api" and self.method == "POST":
            body = json.dumps(self.data).encode()
            return client.generic("POST", url, body, content_type="application/json")
        if self.method == "POST":
            return client.post(url, self.data or {})
        return client.get(url)


DOORS = {
    "page-list": Door("view", "GET", "/executions/"),
    "page-detail": Door("view", "GET", "/executions/{}/"),
    "page-start": Door(
        "add", "POST", "/executions/", {"cmd": "demo.steps"}, 302, ("view",)
    ),
    "page-interrupt": Door(
        "interrupt", "POST", "/executions/{}/interrupt/", {}, 302, ("view",)
    ),
    "api-list": Door("view", "GET", "/api/executions/"),
    "api-detail": Door("view", "GET", "/api/executions/{}/"),
    "api-start": Door("add", "POST", "/api/executions/", {"cmd": "demo.steps"}, 201),
    "api-interrupt": Door(
        "interrupt", "POST", "/api/executions/{}/interrupt/", {}, 202, ("view",)
    ),
    "admin-list": Door("view", "GET", ADMIN),
    "admin-change": Door("view", "GET", ADMIN + "{}/change/"),
    "admin-interrupt": Door(
        "interrupt", "POST", ADMIN + "{}/interrupt/", {}, 302, ("view",)
    ),
    "admin-resume": Door(
        "add", "POST", ADMIN + "{}/resume/", {}, 302, ("view",), "resumable"
    ),
}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("name", DOORS)
def test_door_allows_a_user_with_its_permission(make_user, targets, name):
    door = DOORS[name]
    client = logged_in(make_user(door.action, *door.also, is_staff=True))

    response = door.request(client, targets)

    assert response.status_code == door.allowed


@pytest.mark.parametrize("name", DOORS)
def test_door_refuses_a_user_without_its_permission(make_user, targets, name):
    door = DOORS[name]
    others = [action for action in ACTIONS if action != door.action]
    client = logged_in(make_user(*others, is_staff=True))
    before = table()

    response = door.request(client, targets)

    assert response.status_code == 403
    if door.kind == "api":
        assert response.json() == {
            "error": "forbidden",
            "message": f"You do not have permission to {door.action} executions.",
        }
    assert table() == before


@pytest.mark.parametrize("name", ["page-interrupt", "api-interrupt"])
def test_door_interrupt_also_needs_view(make_user, targets, name):
    # The answer shows the run, so interrupting one you may not see is refused.
    door = DOORS[name]
    client = logged_in(make_user("interrupt"))
    before = table()

    response = door.request(client, targets)

    assert response.status_code == 403
    assert table() == before


@pytest.mark.parametrize("name", DOORS)
def test_door_sends_an_anonymous_user_to_log_in(targets, name):
    door = DOORS[name]
    before = table()

    response = door.request(Client(), targets)

    if door.kind == "api":
        assert response.status_code == 403
        assert response.json() == {
            "error": "not_authenticated",
            "message": "Log in first.",
        }
    else:
        login = "/admin/login/" if door.kind == "admin" else "/accounts/login/"
        assert response.status_code == 302
        assert response.url.startswith(f"{login}?next=")
    assert table() == before


def test_admin_refuses_a_user_who_is_not_staff(make_user, targets):
    client = logged_in(make_user(*ACTIONS))
    before = table()

    responses = [
        door.request(client, targets) for door in DOORS.values() if door.kind == "admin"
    ]

    assert {response.status_code for response in responses} == {302}
    assert all(response.url.startswith("/admin/login/") for response in responses)
    assert table() == before


# -- the admin actions ----------------------------------------------------------------

ADMIN_ACTIONS = {
    "interrupt_selected": (
        "interrupt",
        "running",
        "Interrupt requested for 1 execution.",
    ),
    "resume_selected": ("add", "resumable", "Resumed "),
}


def run_action(client: Client, name: str, target: Execution):
    return client.post(ADMIN, {"action": name, "_selected_action": [str(target.pk)]})


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("name", ADMIN_ACTIONS)
def test_admin_action_offered_and_run_with_its_permission(make_user, targets, name):
    action, target, message = ADMIN_ACTIONS[name]
    client = logged_in(make_user("view", action, is_staff=True))

    offered = client.get(ADMIN).content.decode()
    response = run_action(client, name, targets[target])

    assert f'<option value="{name}">' in offered
    assert messages_of(response)[0].startswith(message)


@pytest.mark.parametrize("name", ADMIN_ACTIONS)
def test_admin_action_hidden_and_refused_without_its_permission(
    make_user, targets, name
):
    action, target, _ = ADMIN_ACTIONS[name]
    others = [each for each in ACTIONS if each != action]
    client = logged_in(make_user(*others, is_staff=True))
    before = table()

    offered = client.get(ADMIN).content.decode()
    response = run_action(client, name, targets[target])

    assert f'<option value="{name}">' not in offered
    assert messages_of(response) == ["No action selected."]
    assert table() == before


@pytest.mark.parametrize("name", ADMIN_ACTIONS)
def test_admin_action_sends_an_anonymous_user_to_log_in(targets, name):
    _, target, _ = ADMIN_ACTIONS[name]
    before = table()

    response = run_action(Client(), name, targets[target])

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/?next=")
    assert table() == before


# -- CSRF on every POST -----------------------------------------------------------

POSTS = {
    **{name: door for name, door in DOORS.items() if door.method == "POST"},
    **{
        f"admin-{name}": Door(
            action,
            "POST",
            ADMIN,
            {"action": name, "_selected_action": "{}"},
            302,
            ("view",),
            target,
        )
        for name, (action, target, _) in ADMIN_ACTIONS.items()
    },
}


@pytest.fixture
def csrf_client(make_user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(*ACTIONS, is_staff=True))
    return client


def with_target(door: Door, targets: dict[str, Execution]) -> Door:
    """The admin actions name their target in the form, not the URL."""
    if isinstance(door.data, dict) and "_selected_action" in door.data:
        data = {**door.data, "_selected_action": str(targets[door.target].pk)}
        return replace(door, data=data)
    return door


@pytest.mark.parametrize("name", POSTS)
def test_post_without_the_csrf_token_is_refused(csrf_client, targets, name):
    door = with_target(POSTS[name], targets)
    before = table()

    response = door.request(csrf_client, targets)

    assert response.status_code == 403
    assert table() == before


@pytest.mark.parametrize("name", POSTS)
def test_post_with_the_csrf_token_is_accepted(csrf_client, targets, name):
    door = with_target(POSTS[name], targets)
    token = csrf_client.get("/api/executions/").cookies["csrftoken"].value
    csrf_client.defaults["HTTP_X_CSRFTOKEN"] = token

    response = door.request(csrf_client, targets)

    assert response.status_code == door.allowed


# -- websockets: permission on connect and on each interrupt, origin ----------------

SOCKETS = ["/ws/executions/{}/", "/ws/executions/"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", SOCKETS)
@pytest.mark.parametrize(
    ("actions", "allowed"),
    [(("view",), True), (("add", "interrupt"), False), (None, False)],
    ids=["view", "no-view", "anonymous"],
)
async def test_websocket_connect_needs_view_permission(
    make_user, targets, path, actions, allowed
):
    user = (
        None if actions is None else await database_sync_to_async(make_user)(*actions)
    )

    async with socket(path.format(targets["running"].pk), user) as (communicator, ok):
        if allowed:
            answer = (await receive(communicator))["type"]
        else:
            answer = await close_code(communicator)

    assert ok
    assert answer == ("snapshot" if allowed else 4403)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("actions", "answer"),
    [
        (("view", "interrupt"), "interrupt"),
        (("view", "add"), "error"),
    ],
    ids=["interrupt", "no-interrupt"],
)
async def test_websocket_interrupt_message_needs_interrupt_permission(
    make_user, targets, actions, answer
):
    user = await database_sync_to_async(make_user)(*actions)
    running = targets["running"]

    async with socket(f"/ws/executions/{running.pk}/", user) as (communicator, _):
        await receive(communicator)
        await communicator.send_json_to({"type": "interrupt"})
        reply = await receive(communicator)

    status = (await Execution.objects.aget(pk=running.pk)).status
    assert reply["type"] == answer
    assert status == (Status.INTERRUPTING if answer == "interrupt" else Status.RUNNING)


async def _deactivate(user) -> None:
    user.is_active = False
    await user.asave(update_fields=["is_active"])


async def _delete(user) -> None:
    await user.adelete()


async def _revoke_interrupt(user) -> None:
    await database_sync_to_async(user.user_permissions.remove)(
        await Permission.objects.aget(codename="interrupt_execution")
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revoke", [_deactivate, _delete], ids=lambda f: f.__name__)
async def test_websocket_interrupt_of_a_user_gone_after_connect_closes_4401(
    make_user, targets, revoke
):
    user = await database_sync_to_async(make_user)("view", "interrupt")
    running = targets["running"]
    before = await database_sync_to_async(table)()

    async with socket(f"/ws/executions/{running.pk}/", user) as (communicator, _):
        await receive(communicator)
        await revoke(user)
        await communicator.send_json_to({"type": "interrupt", "force": True})
        code = await close_code(communicator)

    assert code == 4401
    assert await database_sync_to_async(table)() == before


@pytest.mark.django_db(transaction=True)
async def test_websocket_interrupt_honours_a_revocation_after_connect(
    make_user, targets
):
    user = await database_sync_to_async(make_user)("view", "interrupt")
    running = targets["running"]
    before = await database_sync_to_async(table)()

    async with socket(f"/ws/executions/{running.pk}/", user) as (communicator, _):
        await receive(communicator)
        await _revoke_interrupt(user)
        await communicator.send_json_to({"type": "interrupt", "force": True})
        reply = await receive(communicator)
        await ping(communicator)

    assert reply == {
        "type": "error",
        "code": "forbidden",
        "message": "You do not have permission to interrupt executions.",
    }
    assert await database_sync_to_async(table)() == before


@pytest.mark.django_db(transaction=True)
async def test_websocket_interrupt_honours_a_permission_granted_after_connect(
    make_user, targets
):
    user = await database_sync_to_async(make_user)("view")
    running = targets["running"]

    async with socket(f"/ws/executions/{running.pk}/", user) as (communicator, _):
        await receive(communicator)
        await database_sync_to_async(user.user_permissions.add)(
            await Permission.objects.aget(codename="interrupt_execution")
        )
        await communicator.send_json_to({"type": "interrupt"})
        reply = await receive(communicator)

    assert reply["type"] == "interrupt"
    assert reply["execution"]["interrupt"]["source"] == Source.WEBSOCKET


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", SOCKETS)
async def test_websocket_resync_after_view_is_revoked_closes_4403(
    make_user, targets, path
):
    user = await database_sync_to_async(make_user)("view")

    async with socket(path.format(targets["running"].pk), user) as (communicator, _):
        await receive(communicator)
        await database_sync_to_async(user.user_permissions.clear)()
        await communicator.send_json_to({"type": "resync"})
        code = await close_code(communicator)

    assert code == 4403


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", SOCKETS)
@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (b"http://testserver", True),
        # Another host the site answers to, but not this socket's: CSRF refuses it.
        (b"http://localhost:8000", False),
        (b"https://testserver", False),
        (b"http://evil.example", False),
        (b"http://testserver.evil.example", False),
        (b"null", False),
        (None, False),
    ],
)
async def test_websocket_checks_the_origin(make_user, targets, path, origin, accepted):
    user = await database_sync_to_async(make_user)("view")

    async with socket(path.format(targets["running"].pk), user, origin=origin) as (
        _,
        connected,
    ):
        pass

    assert connected is accepted


# -- a user's permissions, read in one query (executions.permissions)


def _djangos_own(user) -> set[str]:
    """ModelBackend's answer, on a fresh copy of the user (two queries)."""
    return type(user).objects.get(pk=user.pk).get_all_permissions()


def _granted(user, *codenames: str, group: str | None = None) -> None:
    chosen = Permission.objects.filter(
        codename__in=codenames, content_type__app_label="executions"
    )
    if group is None:
        user.user_permissions.add(*chosen)
        return
    team, _ = Group.objects.get_or_create(name=group)
    team.permissions.add(*chosen)
    user.groups.add(team)


def test_preload_reads_own_and_group_permissions_in_one_query(
    make_user, django_assert_num_queries
):
    own = make_user("view")
    grouped = make_user()
    _granted(grouped, "view_execution", "interrupt_execution", group="ops")
    both = make_user("add")
    _granted(both, "add_execution", "interrupt_execution", group="leads")
    _granted(both, "view_execution", group="ops")
    nothing = make_user()

    for user in (own, grouped, both, nothing):
        user = type(user).objects.get(pk=user.pk)
        with django_assert_num_queries(1):
            permissions.preload(user)
        with django_assert_num_queries(0):
            held = user.get_all_permissions()
            user.has_perm("executions.interrupt_execution")
        assert held == _djangos_own(user)
    assert services.can(both, "interrupt")
    assert not services.can(own, "interrupt")


def test_preload_reads_nothing_where_django_would_not(
    make_user, settings, django_assert_num_queries
):
    inactive = make_user("view", is_active=False)
    boss = make_user(is_superuser=True)
    with django_assert_num_queries(0):
        permissions.preload(inactive)
        permissions.preload(boss)
        permissions.preload(AnonymousUser())
        assert not services.can(inactive, "view")
        assert services.can(boss, "interrupt")

    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "django.contrib.auth.backends.RemoteUserBackend",
    ]
    other = make_user("view")
    with django_assert_num_queries(0):
        permissions.preload(other)
    assert not hasattr(other, "_perm_cache")
    assert services.can(other, "view")  # through the backends, as Django does
