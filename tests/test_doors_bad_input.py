"""Bad input at every door: the same unknown or malformed IDs, bad params,
oversized bodies, malformed frames, interrupts of finished executions and
double interrupts, through the JSON API, the websocket, the pages, the admin
and the terminal. Each gets the documented error, and every column of every
execution is as it was (`tests.factories.table`)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils.html import escape

from executions import services
from executions.engine import registry
from executions.models import TERMINAL, Execution, Source, Status
from tests.factories import execution, one_of_each, table
from tests.sockets import close_code, ping, receive, socket

pytestmark = pytest.mark.django_db

MISSING = "6f1c2a0e-0000-4000-8000-000000000000"
BAD_IDS = [
    pytest.param(MISSING, id="missing"),
    pytest.param("not-a-uuid", id="words"),
    pytest.param("12345", id="number"),
    pytest.param(MISSING + "0", id="too-long"),
    pytest.param(MISSING[:-1], id="too-short"),
    pytest.param("x" * 300, id="huge"),
    pytest.param("é", id="unicode"),
    pytest.param("' OR '1'='1", id="sql"),
    pytest.param("\x00", id="nul"),
    pytest.param("%", id="percent"),
]
ADMIN = "/admin/executions/execution/"
ID_DOORS = {
    "api-detail": ("GET", "/api/executions/{}/"),
    "api-interrupt": ("POST", "/api/executions/{}/interrupt/"),
    "page-detail": ("GET", "/executions/{}/"),
    "page-interrupt": ("POST", "/executions/{}/interrupt/"),
    "admin-interrupt": ("POST", ADMIN + "{}/interrupt/"),
    "admin-resume": ("POST", ADMIN + "{}/resume/"),
}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world() -> dict[str, Execution]:
    """Something in every status for a bad request to (not) change."""
    return one_of_each()


@pytest.fixture
def user(make_user):
    """Allowed everything, so only the input is wrong."""
    return make_user("view", "add", "interrupt", is_staff=True, username="ada")


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m.message)) for m in get_messages(response.wsgi_request)]


def post_json(client: Client, url: str, data: dict[str, Any]):
    return client.post(url, json.dumps(data), content_type="application/json")


def command(*args: str) -> tuple[int, str]:
    """Run a management command: its exit code and what it said."""
    out = io.StringIO()
    try:
        call_command(*args, stdout=out)
    except CommandError as error:
        return error.returncode, str(error)
    return 0, out.getvalue().strip()


# -- unknown and malformed IDs ---------------------------------------------------


@pytest.mark.parametrize("execution_id", BAD_IDS)
@pytest.mark.parametrize("door", ID_DOORS)
def test_http_doors_unknown_or_malformed_id_is_not_found(
    world, browser, door, execution_id
):
    method, url = ID_DOORS[door]
    before = table()

    response = browser.generic(method, url.format(quote(execution_id, safe="")))

    assert response.status_code == 404
    if door.startswith("api"):
        assert response.json() == {
            "error": "not_found",
            "message": f"No execution with ID {execution_id!r}.",
        }
    assert table() == before


@pytest.mark.parametrize("execution_id", BAD_IDS)
def test_admin_change_page_unknown_or_malformed_id_goes_to_the_index(
    world, browser, execution_id
):
    before = table()

    response = browser.get(f"{ADMIN}{quote(execution_id, safe='')}/change/")

    assert response.status_code == 302
    assert response.url == "/admin/"
    assert messages_of(response) == [
        (
            "warning",
            f"execution with ID “{execution_id}” doesn’t exist. "
            "Perhaps it was deleted?",
        )
    ]
    assert table() == before


@pytest.mark.parametrize("execution_id", BAD_IDS)
@pytest.mark.parametrize("args", [["interrupt"], ["execute", "--resume"]])
def test_cli_unknown_or_malformed_id_exits_2(world, args, execution_id):
    before = table()

    answer = command(*args, execution_id)

    assert answer == (2, f"No execution with ID {execution_id!r}.")
    assert table() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("execution_id", BAD_IDS)
async def test_websocket_unknown_or_malformed_id_closes_4404(world, user, execution_id):
    before = await database_sync_to_async(table)()

    async with socket(f"/ws/executions/{quote(execution_id, safe='')}/", user) as (
        communicator,
        connected,
    ):
        code = await close_code(communicator)

    assert connected
    assert code == 4404
    assert await database_sync_to_async(table)() == before


# -- starting: unknown commands, params of the wrong type or out of bounds ------

STRATEGY_ERROR = (
    "Unknown interrupt strategy {!r}: use finish-current, "
    "poll-next-n:N (N a whole number) or ignore."
)
PROFILE_ERROR = "must be at most 200 printable characters"
START_DOORS = ("api", "page", "cli")


@dataclass(frozen=True)
class BadStart:
    """A start request that every door given it must refuse with `errors`."""

    params: dict[str, Any]
    errors: dict[str, str]
    cmd: str = "demo.steps"
    strategy: str | None = None
    profile: str | None = None
    #: The doors that can carry it: only JSON has types besides strings, and
    #: the start form posts only the command's own inputs.
    doors: tuple[str, ...] = field(default=START_DOORS)


BAD_STARTS = {
    "count-zero": BadStart({"count": "0"}, {"count": "must be at least 1"}),
    "count-too-big": BadStart({"count": "1001"}, {"count": "must be at most 1000"}),
    "count-word": BadStart({"count": "many"}, {"count": "must be a whole number"}),
    "count-fraction": BadStart({"count": "1.5"}, {"count": "must be a whole number"}),
    "seconds-negative": BadStart({"seconds": "-1"}, {"seconds": "must be at least 0"}),
    "seconds-inf": BadStart({"seconds": "inf"}, {"seconds": "must be a finite number"}),
    "seconds-nan": BadStart({"seconds": "nan"}, {"seconds": "must be a finite number"}),
    "ticks-too-many": BadStart(
        {"ticks": "100001"}, {"ticks": "must be at most 100000"}
    ),
    "cooperative-maybe": BadStart(
        {"cooperative": "maybe"}, {"cooperative": "must be true or false"}
    ),
    "fail-at-beyond-count": BadStart(
        {"count": "2", "fail_at": "9"},
        {"fail_at": "must be a step number from 1 to 2"},
    ),
    "fail-step-unknown": BadStart(
        {"fail_step": "nowhere"},
        {
            "fail_step": "must be one of: app_download, s3_bucket, iam_policy, "
            "iam_role, instance_profile, s3_object"
        },
        cmd="demo.deploy",
    ),
    "sync-without-paths": BadStart(
        {},
        {"src": "a value is required", "dest": "a value is required"},
        cmd="files.sync",
    ),
    "sync-nul-in-path": BadStart(
        {"src": "/tmp\x00/etc", "dest": "/tmp/dest"},
        {"src": "must not contain null characters"},
        cmd="files.sync",
    ),
    "strategy-unknown": BadStart(
        {}, {"strategy": STRATEGY_ERROR.format("sometimes")}, strategy="sometimes"
    ),
    "strategy-negative-n": BadStart(
        {},
        {"strategy": STRATEGY_ERROR.format("poll-next-n:-1")},
        strategy="poll-next-n:-1",
    ),
    "profile-too-long": BadStart({}, {"profile": PROFILE_ERROR}, profile="x" * 201),
    "profile-control-character": BadStart(
        {}, {"profile": PROFILE_ERROR}, profile="a\tb"
    ),
    "param-unknown": BadStart(
        {"nope": "1"},
        {
            "nope": "unknown param; expected one of: cooperative, count, fail_at, "
            "seconds, ticks"
        },
        doors=("api", "cli"),
    ),
    # JSON only: values of other types than strings.
    "count-true": BadStart(
        {"count": True}, {"count": "must be a whole number"}, doors=("api",)
    ),
    "count-list": BadStart(
        {"count": [1]}, {"count": "must be a whole number"}, doors=("api",)
    ),
    "count-float": BadStart(
        {"count": 1.5}, {"count": "must be a whole number"}, doors=("api",)
    ),
    "seconds-huge-integer": BadStart(
        {"seconds": 10**400}, {"seconds": "must be a finite number"}, doors=("api",)
    ),
    "cooperative-one": BadStart(
        {"cooperative": 1}, {"cooperative": "must be true or false"}, doors=("api",)
    ),
    "src-number": BadStart(
        {"src": 5, "dest": "/tmp"},
        {"src": "must be a string"},
        cmd="files.sync",
        doors=("api",),
    ),
}


def start_cases(door: str) -> list:
    return [
        pytest.param(case, id=name)
        for name, case in BAD_STARTS.items()
        if door in case.doors
    ]


@pytest.mark.parametrize("case", start_cases("api"))
def test_api_start_refuses_bad_params_with_field_errors(world, browser, case):
    body = {"cmd": case.cmd, "params": case.params}
    if case.strategy is not None:
        body["strategy"] = case.strategy
    if case.profile is not None:
        body["profile"] = case.profile
    before = table()

    response = post_json(browser, "/api/executions/", body)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_params",
        "message": "; ".join(f"{name}: {text}" for name, text in case.errors.items()),
        "fields": case.errors,
    }
    assert table() == before


@pytest.mark.parametrize("case", start_cases("page"))
def test_page_start_form_refuses_bad_params_on_their_fields(world, browser, case):
    form = {"cmd": case.cmd}
    form.update({f"{case.cmd}.{name}": value for name, value in case.params.items()})
    if case.strategy is not None:
        kind, _, n = case.strategy.partition(":")
        form.update(strategy=kind, strategy_n=n)
    if case.profile is not None:
        form["profile"] = case.profile
    before = table()

    response = browser.post("/executions/", form)

    content = response.content.decode()
    assert response.status_code == 400
    for text in case.errors.values():
        assert f'<p class="error">{escape(text)}</p>' in content
    assert table() == before


@pytest.mark.parametrize("case", start_cases("cli"))
def test_cli_execute_refuses_bad_params_exits_2(world, case):
    args = ["execute", case.cmd]
    for name, value in case.params.items():
        args += ["--param", f"{name}={value}"]
    if case.strategy is not None:
        args += ["--strategy", case.strategy]
    if case.profile is not None:
        args += ["--profile", case.profile]
    before = table()

    answer = command(*args)

    options = [(k, v) for k, v in case.errors.items() if k in ("strategy", "profile")]
    params = [
        (k, v) for k, v in case.errors.items() if k not in ("strategy", "profile")
    ]
    lines = [f"Invalid --{name}: {text}" for name, text in options]
    if params:
        lines += ["Invalid params:", *(f"  {name}: {text}" for name, text in params)]
    assert answer == (2, "\n".join(lines))
    assert table() == before


UNKNOWN_CMD = "Unknown command {!r}. Known commands: {}."


@pytest.mark.parametrize("cmd", ["nope", "demo", "DEMO.STEPS", "<b>x</b>", "é" * 300])
def test_every_door_refuses_an_unknown_command(world, browser, cmd):
    known = sorted(each.name for each in registry)
    message = UNKNOWN_CMD.format(cmd, ", ".join(known))
    before = table()

    api = post_json(browser, "/api/executions/", {"cmd": cmd})
    page = browser.post("/executions/", {"cmd": cmd})
    cli = command("execute", cmd)

    assert (api.status_code, api.json()) == (
        400,
        {"error": "unknown_cmd", "message": message, "cmd": cmd, "known": known},
    )
    assert page.status_code == 400
    assert f'<p class="error">{escape(message)}</p>' in page.content.decode()
    assert cli == (2, message)
    assert table() == before


@pytest.mark.parametrize(
    ("src", "dest", "errors"),
    [
        ("outside", "inside/dest", {"src": "must be inside one of the allowed roots"}),
        (
            "inside/src",
            "inside/../outside/dest",
            {"dest": "must be inside one of the allowed roots"},
        ),
        (
            "inside/link-out",
            "inside/dest",
            {"src": "must be inside one of the allowed roots"},
        ),
    ],
)
def test_shared_doors_keep_files_sync_inside_the_roots(
    world, browser, settings, tmp_path, src, dest, errors
):
    (tmp_path / "inside" / "src").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "inside" / "link-out").symlink_to(tmp_path / "outside")
    settings.EXECUTIONS_FILES_ROOTS = [str(tmp_path / "inside")]
    params = {"src": str(tmp_path / src), "dest": str(tmp_path / dest)}
    before = table()

    api = post_json(
        browser, "/api/executions/", {"cmd": "files.sync", "params": params}
    )
    page = browser.post(
        "/executions/",
        {"cmd": "files.sync", **{f"files.sync.{k}": v for k, v in params.items()}},
    )

    assert (api.status_code, api.json()["fields"]) == (400, errors)
    assert page.status_code == 400
    for text in errors.values():
        assert f'<p class="error">{text}</p>' in page.content.decode()
    assert table() == before


# -- oversized bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/executions/", {"cmd": "demo.steps", "profile": "x" * 262_144}),
        ("/api/executions/{}/interrupt/", {"reason": "x" * 262_144}),
    ],
    ids=["start", "interrupt"],
)
def test_api_oversized_body_is_413(world, browser, url, body):
    before = table()

    response = post_json(browser, url.format(world[Status.RUNNING].pk), body)

    assert response.status_code == 413
    assert response.json() == {
        "error": "too_large",
        "message": "The request body is over 262144 bytes.",
    }
    assert table() == before


@pytest.mark.parametrize(
    ("url", "form"),
    [
        ("/executions/", {"cmd": "demo.steps"}),
        ("/executions/{}/interrupt/", {}),
        (ADMIN, {"action": "interrupt_selected", "_selected_action": "{}"}),
        (ADMIN + "{}/interrupt/", {}),
    ],
    ids=["page-start", "page-interrupt", "admin-action", "admin-interrupt"],
)
def test_form_doors_oversized_body_is_400(world, browser, url, form):
    running = str(world[Status.RUNNING].pk)
    data = {key: value.format(running) for key, value in form.items()}
    before = table()

    response = browser.post(url.format(running), {**data, "reason": "x" * 262_144})

    assert response.status_code == 400
    assert table() == before


# -- bad interrupt fields ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"force": "yes"}, {"force": "must be true or false"}),
        ({"force": 1}, {"force": "must be true or false"}),
        ({"reason": ["x"]}, {"reason": "must be a string"}),
        ({"now": True}, {"now": "unknown field; expected one of: force, reason"}),
    ],
)
def test_api_interrupt_refuses_bad_fields(world, browser, body, fields):
    running = world[Status.RUNNING]
    before = table()

    response = post_json(browser, f"/api/executions/{running.pk}/interrupt/", body)

    assert response.status_code == 400
    assert response.json()["fields"] == fields
    assert table() == before


@pytest.mark.parametrize("force", ["maybe", "2", "on"])
def test_page_interrupt_refuses_a_bad_force(world, browser, force):
    running = world[Status.RUNNING]
    before = table()

    response = browser.post(f"/executions/{running.pk}/interrupt/", {"force": force})

    assert response.status_code == 400
    assert messages_of(response) == [
        ("error", "Force must be 0 or 1. Nothing changed.")
    ]
    assert table() == before


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        ("x" * 2001, "Ensure this value has at most 2000 characters (it has 2001)."),
        ("a\x00b", "Null characters are not allowed."),
    ],
)
def test_admin_interrupt_refuses_a_bad_reason(world, browser, reason, problem):
    running = world[Status.RUNNING]
    before = table()

    response = browser.post(f"{ADMIN}{running.pk}/interrupt/", {"reason": reason})

    assert messages_of(response) == [("error", f"Not interrupted: {problem}")]
    assert table() == before


@pytest.mark.parametrize("door", ["api", "page", "cli"])
def test_a_nul_in_a_reason_is_dropped_at_every_door(world, browser, door):
    # PostgreSQL cannot store one: kept, it would turn the request into a 500.
    running = world[Status.RUNNING]
    reason = "disk\x00 full"

    if door == "api":
        url = f"/api/executions/{running.pk}/interrupt/"
        post_json(browser, url, {"reason": reason})
    elif door == "page":
        browser.post(f"/executions/{running.pk}/interrupt/", {"reason": reason})
    else:
        command("interrupt", str(running.pk), "--reason", reason)

    running.refresh_from_db()
    assert running.status == Status.INTERRUPTING
    assert running.interrupt_reason == "disk full"


# -- malformed websocket frames and unknown message types -------------------------

NOT_JSON = ("bad_json", "The message is not valid JSON.")
NOT_AN_OBJECT = ("bad_message", 'A message is a JSON object with a string "type".')
ONLY_TYPE = ("bad_message", "Unexpected field; this message may have only: type.")
TOO_LARGE = ("too_large", "The message is over 262144 characters.")
UNKNOWN_TYPE = "Unknown message type; expected one of: {}."
PAD = "x" * 262_144
FRAMES = {
    "bytes": (
        {"bytes": b'{"type": "ping"}'},
        ("bad_json", "Send JSON in text frames."),
    ),
    "empty": ({"text": ""}, NOT_JSON),
    "truncated": ({"text": '{"type": "pi'}, NOT_JSON),
    "deep": ({"text": "[" * 50_000}, NOT_JSON),
    "surrogate": ({"text": '{"type": "\\ud800"}'}, NOT_JSON),
    "null": ({"text": "null"}, NOT_AN_OBJECT),
    "string": ({"text": '"ping"'}, NOT_AN_OBJECT),
    "type-list": ({"text": '{"type": ["ping"]}'}, NOT_AN_OBJECT),
    "no-type": ({"text": '{"kind": "ping"}'}, NOT_AN_OBJECT),
    "upper-case": ({"text": '{"type": "PING"}'}, "unknown_type"),
    "unknown": ({"text": '{"type": "delete"}'}, "unknown_type"),
    "ping-extra": ({"text": '{"type": "ping", "x": 1}'}, ONLY_TYPE),
    "resync-extra": ({"text": '{"type": "resync", "all": true}'}, ONLY_TYPE),
    "oversized": ({"text": '{"type": "ping", "pad": "' + PAD + '"}'}, TOO_LARGE),
}
SOCKETS = {
    "execution": ("/ws/executions/{}/", "interrupt, ping, resync"),
    "list": ("/ws/executions/", "ping, resync"),
}
INTERRUPT_FRAMES = {
    "force-int": ({"force": 1}, ("bad_message", "force must be true or false.")),
    "reason-int": ({"reason": 7}, ("bad_message", "reason must be a string.")),
    "extra": (
        {"by": "x"},
        (
            "bad_message",
            "Unexpected field; this message may have only: type, force, reason.",
        ),
    ),
    "surrogate": ({"reason": "\udfff"}, NOT_JSON),
    "oversized": ({"reason": PAD}, TOO_LARGE),
}


async def send_bad_frame(path: str, user, frame: dict) -> dict:
    """Send `frame` (an ASGI message's `text` or `bytes`); return the answer,
    having checked that the socket stayed open and nothing else arrived."""
    async with socket(path, user) as (communicator, _):
        await receive(communicator)  # the snapshot
        await communicator.send_input({"type": "websocket.receive", **frame})
        answer = await receive(communicator)
        await ping(communicator)
        assert await communicator.receive_nothing()
    return answer


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("kind", SOCKETS)
async def test_websocket_bad_frame_is_an_error_and_changes_nothing(
    world, user, kind, frame
):
    path, types = SOCKETS[kind]
    sent, expected = FRAMES[frame]
    if expected == "unknown_type":
        expected = ("unknown_type", UNKNOWN_TYPE.format(types))
    before = await database_sync_to_async(table)()

    answer = await send_bad_frame(path.format(world[Status.RUNNING].pk), user, sent)

    assert answer == {"type": "error", "code": expected[0], "message": expected[1]}
    assert await database_sync_to_async(table)() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fields", INTERRUPT_FRAMES)
async def test_websocket_bad_interrupt_is_an_error_and_changes_nothing(
    world, user, fields
):
    sent, (code, message) = INTERRUPT_FRAMES[fields]
    text = json.dumps({"type": "interrupt", **sent}, ensure_ascii=False)
    before = await database_sync_to_async(table)()

    answer = await send_bad_frame(
        f"/ws/executions/{world[Status.RUNNING].pk}/", user, {"text": text}
    )

    assert answer == {"type": "error", "code": code, "message": message}
    assert await database_sync_to_async(table)() == before


@pytest.mark.django_db(transaction=True)
async def test_list_websocket_refuses_an_interrupt(world, user):
    before = await database_sync_to_async(table)()

    answer = await send_bad_frame(
        "/ws/executions/", user, {"text": '{"type": "interrupt"}'}
    )

    assert answer == {
        "type": "error",
        "code": "unknown_type",
        "message": UNKNOWN_TYPE.format("ping, resync"),
    }
    assert await database_sync_to_async(table)() == before


# -- interrupts of finished executions, and double interrupts ---------------------


def api_interrupt(client: Client, target: Execution, force: bool):
    response = post_json(
        client, f"/api/executions/{target.pk}/interrupt/", {"force": force}
    )
    return response.status_code, response.json()


def page_interrupt(client: Client, target: Execution, force: bool):
    form = {"force": "1" if force else "0"}
    response = client.post(f"/executions/{target.pk}/interrupt/", form)
    return response.status_code, messages_of(response)


def admin_action(client: Client, target: Execution, force: bool):
    assert not force, "the action has no force"
    form = {"action": "interrupt_selected", "_selected_action": [str(target.pk)]}
    response = client.post(ADMIN, form)
    return response.status_code, messages_of(response)


def admin_button(client: Client, target: Execution, force: bool):
    response = client.post(
        f"{ADMIN}{target.pk}/interrupt/", {"force": "on"} if force else {}
    )
    return response.status_code, messages_of(response)


def cli_interrupt(client: Client, target: Execution, force: bool):
    return command("interrupt", str(target.pk), *(["--force"] if force else []))


INTERRUPT_DOORS = {
    "api": api_interrupt,
    "page": page_interrupt,
    "admin-action": admin_action,
    "admin-button": admin_button,
    "cli": cli_interrupt,
}


def not_running_answer(door: str, target: Execution):
    status = target.status
    text = f"Execution {target.pk} is not running: it is {status}."
    return {
        "api": (409, {"error": "not_running", "message": text, "status": status}),
        "page": (
            302,
            [
                (
                    "info",
                    f"Not running: this execution has finished ({status}). "
                    "Nothing changed.",
                )
            ],
        ),
        "admin-action": (302, [("warning", "1 already finished.")]),
        "admin-button": (302, [("warning", text)]),
        "cli": (1, text),
    }[door]


def already_answer(door: str, target: Execution):
    short = str(target.pk)[:8]
    return {
        "api": (202, target.snapshot()),
        "page": (302, [("success", "An interrupt was already requested.")]),
        "admin-action": (302, [("warning", "1 already interrupting.")]),
        "admin-button": (
            302,
            [("warning", f"{short}: An interrupt was already requested.")],
        ),
        "cli": (
            0,
            f"{target.pk}: interrupting. An interrupt was already requested.",
        ),
    }[door]


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("door", INTERRUPT_DOORS)
def test_interrupt_of_a_finished_execution_is_refused_at_every_door(
    world, browser, door, status
):
    finished = world[status]
    before = table()

    answer = INTERRUPT_DOORS[door](browser, finished, False)

    assert answer == not_running_answer(door, finished)
    assert table() == before


@pytest.mark.parametrize(
    ("door", "force"),
    [
        *((door, False) for door in INTERRUPT_DOORS),
        *((door, True) for door in INTERRUPT_DOORS if door != "admin-action"),
    ],
)
def test_a_second_interrupt_changes_nothing_at_every_door(world, browser, door, force):
    target = world[Status.RUNNING]
    services.request_interrupt(
        target.pk, source=Source.CLI, by_name="ops", reason="first", force=force
    )
    target.refresh_from_db()
    before = table()

    answer = INTERRUPT_DOORS[door](browser, target, force)

    assert answer == already_answer(door, target)
    assert table() == before
    assert target.interrupt_snapshot()["reason"] == "first"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", TERMINAL)
async def test_websocket_interrupt_of_a_finished_execution_is_refused(
    world, user, status
):
    finished = world[status]
    before = await database_sync_to_async(table)()

    async with socket(f"/ws/executions/{finished.pk}/", user) as (communicator, _):
        await receive(communicator)
        await communicator.send_json_to({"type": "interrupt", "reason": "late"})
        answer = await receive(communicator)
        await ping(communicator)

    assert answer == {
        "type": "error",
        "code": "not_running",
        "message": f"Execution {finished.pk} is not running: it is {status}.",
        "status": status,
    }
    assert await database_sync_to_async(table)() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("force", [False, True])
async def test_websocket_second_interrupt_changes_nothing(world, user, force):
    target = world[Status.RUNNING]
    await database_sync_to_async(services.request_interrupt)(
        target.pk, source=Source.CLI, by_name="ops", reason="first", force=force
    )
    before = await database_sync_to_async(table)()

    async with socket(f"/ws/executions/{target.pk}/", user) as (communicator, _):
        snapshot = await receive(communicator)
        await communicator.send_json_to({"type": "interrupt", "force": force})
        answer = await receive(communicator)

    assert answer == {
        "type": "interrupt",
        "result": "already",
        "execution": snapshot["execution"],
    }
    assert answer["execution"]["interrupt"]["reason"] == "first"
    assert await database_sync_to_async(table)() == before


# -- hostile text that is accepted is shown escaped --------------------------------

XSS = "<script>alert(1)</script>"


def test_hostile_text_is_escaped_on_every_page_and_in_the_admin(browser, tmp_path):
    (tmp_path / "src").mkdir()
    hostile = execution(
        Status.RUNNING,
        cmd="files.sync",
        params={"src": str(tmp_path / "src"), "dest": f"{tmp_path}/{XSS}"},
        profile=XSS,
    )
    steps = [{**step, "message": XSS, "error": XSS} for step in hostile.steps]
    hostile.save_steps(steps)
    services.request_interrupt(hostile.pk, source=Source.API, reason=XSS, by_name=XSS)
    outcome = {
        "kind": "failed",
        "steps_processed": [],
        "steps_not_processed": [step["id"] for step in steps],
        "errors": {steps[0]["id"]: XSS},
    }
    hostile.finish(Status.FAILED, outcome=outcome, steps=steps)
    pages = [
        "/executions/",
        f"/executions/{hostile.pk}/",
        ADMIN,
        f"{ADMIN}{hostile.pk}/change/",
    ]

    contents = {page: browser.get(page).content.decode() for page in pages}

    for page, content in contents.items():
        assert XSS not in content, page
        assert escape(XSS) in content, page


# -- a reason over 2000 characters: refused at every door, never cut ----------------

LONG_REASON = "x" * 2001
REASON_ERROR = "reason: must be at most 2000 characters"


def test_every_door_refuses_a_reason_over_2000_characters(world, browser):
    running = world[Status.RUNNING]
    before = table()

    api = post_json(
        browser, f"/api/executions/{running.pk}/interrupt/", {"reason": LONG_REASON}
    )
    page = browser.post(f"/executions/{running.pk}/interrupt/", {"reason": LONG_REASON})
    terminal = command("interrupt", str(running.pk), "--reason", LONG_REASON)

    assert api.status_code == 400
    assert api.json()["fields"] == {"reason": "must be at most 2000 characters"}
    assert page.status_code == 400
    assert ("error", f"Not interrupted: {REASON_ERROR}. Nothing changed.") in (
        messages_of(page)
    )
    assert terminal == (2, REASON_ERROR)
    assert table() == before


# -- numbers too long to parse, blank profiles, controls in reasons ---------------


def test_api_limit_of_5000_digits_is_a_400(world, browser):
    before = table()

    response = browser.get("/api/executions/", {"limit": "9" * 5000})

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "limit": "must be a whole number from 1 to 500"
    }
    assert table() == before


@pytest.mark.parametrize("door", ["api", "cli"])
def test_a_strategy_of_5000_digits_is_refused_without_pythons_words(
    world, browser, door
):
    strategy = "poll-next-n:" + "9" * 5000
    before = table()

    if door == "api":
        response = post_json(
            browser, "/api/executions/", {"cmd": "demo.steps", "strategy": strategy}
        )
        answer = response.status_code, response.json()["fields"]["strategy"]
    else:
        answer = command("execute", "demo.steps", "--strategy", strategy)

    assert "digits" not in str(answer)
    assert answer[0] in (400, 2)
    assert services.STRATEGY_TOO_LONG in str(answer)
    assert table() == before


@pytest.mark.parametrize("profile", ["   ", "\t", " \n "])
def test_a_blank_profile_is_no_profile_at_every_door(browser, profile):
    response = post_json(
        browser,
        "/api/executions/",
        {"cmd": "demo.steps", "params": {"count": 1}, "profile": profile},
    )
    form = browser.post(
        "/executions/", {"cmd": "demo.steps", "profile": profile, "demo.steps.count": 1}
    )

    assert response.status_code == 201
    assert form.status_code == 302
    assert list(Execution.objects.values_list("profile", flat=True)) == [None, None]


HIDDEN = "\u202eevil\u2066\u200f\x1b[2J\x85\x07"


@pytest.mark.parametrize("door", ["api", "page", "admin", "cli"])
def test_control_and_bidi_characters_leave_a_reason_at_every_door(world, browser, door):
    running = world[Status.RUNNING]
    reason = f"disk\tfull{HIDDEN}\nsee log"

    if door == "api":
        post_json(
            browser, f"/api/executions/{running.pk}/interrupt/", {"reason": reason}
        )
    elif door == "page":
        browser.post(f"/executions/{running.pk}/interrupt/", {"reason": reason})
    elif door == "admin":
        browser.post(f"{ADMIN}{running.pk}/interrupt/", {"reason": reason})
    else:
        command("interrupt", str(running.pk), "--reason", reason)

    running.refresh_from_db()
    assert running.interrupt_reason.strip() == "disk\tfullevil[2J\nsee log"
