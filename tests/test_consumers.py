"""The websocket consumers (executions/consumers.py), driven through the real
ASGI application: origin check, session auth, routing, channel layer."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission

from executions import services
from executions.models import Execution, LogLine, Source, Status
from executions.runtime import groups
from peace_site.asgi import application
from tests.factories import UNKNOWN_ID, run_here
from tests.sockets import HOST, TIMEOUT, ping, receive, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = {"count": 2, "seconds": 0.02, "ticks": 2}
SLOW = {"count": 3, "seconds": 30, "ticks": 300}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user(make_user):
    return make_user("view", "interrupt")


def start(params: dict = QUICK, *, running: bool = False) -> Execution:
    """An execution the test runs itself (or only pretends is running)."""
    execution = services.start_execution(
        "demo.steps", params, source=Source.CLI, dispatch=False
    ).execution
    if running:
        execution.claim("test-runner")
    return execution


@database_sync_to_async
def db_snapshot(execution_id) -> dict:
    return Execution.objects.get(pk=execution_id).snapshot()


@pytest.fixture
async def connect():
    """Open a websocket as `user` (anonymous if None); every one opened is
    disconnected at the end."""
    opened = []

    async def open_socket(path, user=None, origin=b"http://testserver"):
        headers = [(b"host", HOST), (b"origin", origin)]
        if user is not None:
            headers.append((b"cookie", await session_cookie(user)))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        opened.append(communicator)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        return communicator, connected

    yield open_socket
    for communicator in opened:
        await communicator.disconnect()


async def receive_until(communicator, kind: str) -> list[dict]:
    """Every message up to and including the first of type `kind`."""
    messages = [await receive(communicator)]
    while messages[-1]["type"] != kind:
        messages.append(await receive(communicator))
    return messages


# -- /ws/executions/<id>/ ------------------------------------------------------------


async def test_execution_socket_sends_the_snapshot_first(connect, user):
    execution = await database_sync_to_async(start)()

    communicator, connected = await connect(f"/ws/executions/{execution.id}/", user)

    assert connected
    assert await receive(communicator) == {
        "type": "snapshot",
        "execution": await db_snapshot(execution.id),
    }


async def test_execution_socket_tells_the_runs_supervisor_a_watcher_joined(
    connect, user
):
    execution = await database_sync_to_async(start)(SLOW, running=True)
    layer = get_channel_layer()
    supervisor = await layer.new_channel()
    await layer.group_add(groups.control_group(execution.id), supervisor)

    _, connected = await connect(f"/ws/executions/{execution.id}/", user)
    heard = await asyncio.wait_for(layer.receive(supervisor), TIMEOUT)

    assert connected
    assert heard == {"type": groups.WATCHED}


async def test_execution_socket_unpacks_a_progress_tick_into_step_events(connect, user):
    execution = await database_sync_to_async(start)(running=True)
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)  # the snapshot
    steps = [{**step, "status": "running"} for step in execution.steps[:2]]

    await get_channel_layer().group_send(
        groups.watch_group(execution.id),
        {"type": groups.PROGRESS, "execution_id": str(execution.id), "steps": steps},
    )

    events = [await receive(communicator), await receive(communicator)]
    assert events == [
        {"type": "step", "execution_id": str(execution.id), "step": step}
        for step in steps
    ]


async def test_events_reach_a_watcher_without_a_hop_to_the_sync_thread(
    connect, user, monkeypatch
):
    """Channels hops to the one sync thread before each message a consumer
    handles (`aclose_old_connections`); with hundreds of watchers those hops
    were the fan-out's bottleneck. An event forwarded within the re-check
    interval takes none."""
    import channels.consumer

    hops = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    execution = await database_sync_to_async(start)(running=True)
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)  # the snapshot
    step = {**execution.steps[0], "status": "running"}

    for _ in range(10):
        await get_channel_layer().group_send(
            groups.watch_group(execution.id),
            {
                "type": groups.PROGRESS,
                "execution_id": str(execution.id),
                "steps": [step],
            },
        )
    for _ in range(10):
        assert (await receive(communicator))["type"] == "step"

    assert hops == []


async def test_execution_socket_streams_a_run_in_order(connect, user):
    execution = await database_sync_to_async(start)()
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)

    await asyncio.wait_for(run_here(execution.id), TIMEOUT)
    messages = await receive_until(communicator, "finished")

    assert messages[0]["type"] == "status"
    assert messages[0]["execution"]["status"] == "running"
    steps = messages[1:-1]
    assert {message["type"] for message in steps} == {"step"}
    assert {message["execution_id"] for message in steps} == {str(execution.id)}
    order = [message["step"]["id"] for message in steps]
    assert order == sorted(order)
    last = {message["step"]["id"]: message["step"] for message in steps}
    assert [step["status"] for step in last.values()] == ["succeeded", "succeeded"]
    assert messages[-1]["execution"] == await db_snapshot(execution.id)
    assert messages[-1]["execution"]["status"] == "succeeded"
    assert await communicator.receive_nothing()


async def test_execution_socket_forwards_the_runs_log_lines(connect, user):
    execution = await database_sync_to_async(services.start_execution)(
        "demo.logs", {"lines": 2, "seconds": 0}, source=Source.CLI, dispatch=False
    )
    execution_id = execution.execution.id
    communicator, _ = await connect(f"/ws/executions/{execution_id}/", user)
    await receive(communicator)

    await asyncio.wait_for(run_here(execution_id), TIMEOUT)
    messages = await receive_until(communicator, "finished")

    logs = [message for message in messages if message["type"] == "log"]
    assert {message["execution_id"] for message in logs} == {str(execution_id)}
    assert {message["dropped"] for message in logs} == {0}
    lines = [line for message in logs for line in message["lines"]]
    assert lines == await stored_log(execution_id)
    assert [line["text"] for line in lines[:2]] == [
        "preparing 1 of 2",
        "preparing 2 of 2",
    ]


@database_sync_to_async
def stored_log(execution_id) -> list[dict]:
    return [line.snapshot() for line in LogLine.objects.filter(execution=execution_id)]


async def test_execution_socket_interrupt_stops_the_run(connect, user):
    execution = await database_sync_to_async(start)(SLOW)
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)
    run = asyncio.create_task(run_here(execution.id))
    await receive_until(communicator, "step")

    await communicator.send_json_to({"type": "interrupt", "reason": "enough"})
    reply = await receive_until(communicator, "interrupt")
    await asyncio.wait_for(run, TIMEOUT)
    finished = (await receive_until(communicator, "finished"))[-1]

    assert reply[-1]["result"] == "requested"
    assert reply[-1]["execution"]["status"] == "interrupting"
    assert finished["execution"] == await db_snapshot(execution.id)
    assert finished["execution"]["status"] == "interrupted"
    assert finished["execution"]["interrupt"]["source"] == "websocket"
    assert finished["execution"]["interrupt"]["by"] == user.username
    assert finished["execution"]["interrupt"]["reason"] == "enough"
    assert finished["execution"]["outcome"]["steps_processed"] == []


async def test_execution_socket_interrupt_of_a_queued_one_is_interrupted(connect, user):
    execution = await database_sync_to_async(start)()
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)

    await communicator.send_json_to({"type": "interrupt", "force": True})
    reply = await receive_until(communicator, "interrupt")

    assert reply[-1]["result"] == "interrupted"
    assert reply[-1]["execution"] == await db_snapshot(execution.id)
    assert reply[-1]["execution"]["status"] == "interrupted"


async def test_execution_socket_interrupt_of_a_finished_one_is_not_running(
    connect, user
):
    execution = await database_sync_to_async(start)()
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)
    await run_here(execution.id)
    await receive_until(communicator, "finished")

    await communicator.send_json_to({"type": "interrupt"})

    assert await receive(communicator) == {
        "type": "error",
        "code": "not_running",
        "message": f"Execution {execution.id} is not running: it is succeeded.",
        "status": "succeeded",
    }
    await ping(communicator)


@pytest.mark.parametrize("execution_id", [UNKNOWN_ID, "not-a-uuid", "%20"])
async def test_execution_socket_unknown_id_closes_4404(connect, user, execution_id):
    communicator, connected = await connect(f"/ws/executions/{execution_id}/", user)

    assert connected
    assert await communicator.receive_output(TIMEOUT) == {
        "type": "websocket.close",
        "code": 4404,
    }


@pytest.mark.parametrize("actions", [None, (), ("add", "interrupt")])
async def test_execution_socket_without_view_permission_closes_4403(
    connect, make_user, actions
):
    execution = await database_sync_to_async(start)()
    user = (
        None if actions is None else await database_sync_to_async(make_user)(*actions)
    )

    communicator, connected = await connect(f"/ws/executions/{execution.id}/", user)

    assert connected
    assert await communicator.receive_output(TIMEOUT) == {
        "type": "websocket.close",
        "code": 4403,
    }


async def test_execution_socket_refuses_a_foreign_origin(connect, user):
    execution = await database_sync_to_async(start)()

    _, connected = await connect(
        f"/ws/executions/{execution.id}/", user, origin=b"http://evil.example"
    )

    assert not connected


FORBIDDEN = {
    "type": "error",
    "code": "forbidden",
    "message": "You do not have permission to interrupt executions.",
}


async def test_execution_socket_interrupt_without_permission_is_forbidden(
    connect, make_user
):
    execution = await database_sync_to_async(start)(running=True)
    viewer = await database_sync_to_async(make_user)("view")
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", viewer)
    before = await receive(communicator)

    await communicator.send_json_to({"type": "interrupt"})

    assert await receive(communicator) == FORBIDDEN
    await ping(communicator)
    assert await db_snapshot(execution.id) == before["execution"]


async def test_execution_socket_honours_a_permission_revoked_after_connect(
    connect, user
):
    execution = await database_sync_to_async(start)(running=True)
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    before = await receive(communicator)
    await database_sync_to_async(user.user_permissions.remove)(
        await Permission.objects.aget(codename="interrupt_execution")
    )

    await communicator.send_json_to({"type": "interrupt", "force": True})

    assert await receive(communicator) == FORBIDDEN
    assert await db_snapshot(execution.id) == before["execution"]
    assert before["execution"]["status"] == Status.RUNNING


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ({"text_data": "{"}, "bad_json", "The message is not valid JSON."),
        ({"text_data": "[" * 100_000}, "bad_json", "The message is not valid JSON."),
        ({"bytes_data": b"{}"}, "bad_json", "Send JSON in text frames."),
        (
            {"text_data": "[1]"},
            "bad_message",
            'A message is a JSON object with a string "type".',
        ),
        (
            {"text_data": '{"type": 5}'},
            "bad_message",
            'A message is a JSON object with a string "type".',
        ),
        (
            {"text_data": '{"type": "dance"}'},
            "unknown_type",
            "Unknown message type; expected one of: interrupt, ping, resync.",
        ),
        (
            {"text_data": '{"type": "interrupt", "force": "yes"}'},
            "bad_message",
            "force must be true or false.",
        ),
        (
            {"text_data": '{"type": "interrupt", "reason": 1}'},
            "bad_message",
            "reason must be a string.",
        ),
        (
            {"text_data": '{"type": "interrupt", "now": true}'},
            "bad_message",
            "Unexpected field; this message may have only: type, force, reason.",
        ),
    ],
)
async def test_execution_socket_bad_message_is_an_error_and_stays_open(
    connect, user, frame, code, message
):
    execution = await database_sync_to_async(start)(running=True)
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    before = await receive(communicator)

    await communicator.send_to(**frame)

    assert await receive(communicator) == {
        "type": "error",
        "code": code,
        "message": message,
    }
    await ping(communicator)
    assert await db_snapshot(execution.id) == before["execution"]


async def test_execution_socket_resync_sends_a_fresh_snapshot(connect, user):
    execution = await database_sync_to_async(start)()
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)
    await database_sync_to_async(execution.claim)("test-runner")

    await communicator.send_json_to({"type": "resync"})

    snapshot = await receive(communicator)
    assert snapshot == {
        "type": "snapshot",
        "execution": await db_snapshot(execution.id),
    }
    assert snapshot["execution"]["status"] == "running"


# -- /ws/executions/ -----------------------------------------------------------------


async def test_list_socket_sends_the_latest_50_then_created(connect, user):
    executions = [await database_sync_to_async(start)() for _ in range(51)]
    communicator, connected = await connect("/ws/executions/", user)

    snapshot = await receive(communicator)
    created = await database_sync_to_async(start)()
    event = await receive(communicator)

    assert connected
    assert snapshot["type"] == "snapshot"
    assert [row["id"] for row in snapshot["executions"]] == [
        str(execution.id) for execution in reversed(executions[1:])
    ]
    assert event == {"type": "created", "execution": await db_snapshot(created.id)}


async def test_list_socket_hears_status_changes_and_answers_ping(connect, user):
    execution = await database_sync_to_async(start)()
    communicator, _ = await connect("/ws/executions/", user)
    await receive(communicator)

    await run_here(execution.id)
    messages = await receive_until(communicator, "finished")

    assert [message["type"] for message in messages] == ["status", "finished"]
    assert messages[-1]["execution"] == await db_snapshot(execution.id)
    await ping(communicator)


@pytest.mark.parametrize("actions", [None, ("add", "interrupt")])
async def test_list_socket_without_view_permission_closes_4403(
    connect, make_user, actions
):
    user = (
        None if actions is None else await database_sync_to_async(make_user)(*actions)
    )

    communicator, connected = await connect("/ws/executions/", user)

    assert connected
    assert await communicator.receive_output(TIMEOUT) == {
        "type": "websocket.close",
        "code": 4403,
    }


# -- the doors' guards ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/", "/ws/executions/a/b/", "/elsewhere"])
async def test_unrouted_path_closes_4404(connect, path):
    communicator, connected = await connect(path)

    assert connected
    output = await communicator.receive_output(TIMEOUT)
    assert output == {"type": "websocket.close", "code": 4404}


async def test_socket_without_the_channel_layer_closes_1013(connect, user, settings):
    from channels.layers import channel_layers

    # A real Redis layer, at a port nothing listens on.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]},
        }
    }
    channel_layers.backends.clear()
    try:
        communicator, connected = await connect("/ws/executions/", user)
        output = await communicator.receive_output(TIMEOUT)
    finally:
        channel_layers.backends.clear()

    assert connected
    assert output == {"type": "websocket.close", "code": 1013}


async def test_client_over_the_rate_is_refused_then_closed(connect, user):
    communicator, _ = await connect("/ws/executions/", user)
    await receive(communicator)

    for _ in range(80):
        await communicator.send_json_to({"type": "ping"})
    answers = []
    while True:
        output = await communicator.receive_output(TIMEOUT)
        if output["type"] == "websocket.close":
            break
        answers.append(output["text"])

    assert output["code"] == 4429
    assert answers.count('{"type": "pong"}') < 40
    assert any('"code": "rate_limited"' in answer for answer in answers)


async def test_resyncs_are_coalesced_to_one_snapshot(connect, user):
    execution = await database_sync_to_async(start)()
    communicator, _ = await connect(f"/ws/executions/{execution.id}/", user)
    await receive(communicator)

    for _ in range(10):
        await communicator.send_json_to({"type": "resync"})
    await ping(communicator)
    snapshot = await receive(communicator)

    assert snapshot == {
        "type": "snapshot",
        "execution": await db_snapshot(execution.id),
    }
    assert await communicator.receive_nothing(timeout=1.5)
