"""Fuzzing the JSON API and the websocket protocol (bounded, with hypothesis).

Whatever arrives, the API answers one of the contract's status codes with a
JSON body (never a 500), a refusal changes nothing, and a socket answers each
frame with an error or a valid message and stays open.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import hypothesis
import pytest
from channels.db import database_sync_to_async
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from executions.engine import registry
from executions.models import Execution, Status
from tests.factories import execution, table
from tests.sockets import socket

# The examples of one test share its user, execution and database: that is
# the point (state accumulates as it would in a server), not an accident.
HTTP = hypothesis.settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WEBSOCKET = hypothesis.settings(HTTP, max_examples=50)

# Text as hostile clients send it: any code point, and often the ones that
# break things downstream: unpaired surrogates (JSON can escape them), NUL.
TEXT = st.text(
    st.characters() | st.sampled_from(["\ud800", "\udfff", "\x00", "<"]),
    max_size=20,
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**63])
    | st.floats()
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=10,
)
# Well-formed requests with hostile values, so the fuzz gets past the first
# checks to the service and the database.
START = st.fixed_dictionaries(
    {"cmd": st.sampled_from(sorted(cmd.name for cmd in registry))},
    optional={
        "params": st.dictionaries(
            st.sampled_from(sorted({p.name for cmd in registry for p in cmd.params}))
            | TEXT,
            JSON,
            max_size=4,
        ),
        "profile": st.sampled_from(["staging", "x" * 201]) | TEXT | JSON,
        "strategy": st.sampled_from(["ignore", "poll-next-n:2", "poll-next-n:-1"])
        | TEXT
        | JSON,
    },
)
INTERRUPT = st.fixed_dictionaries(
    {}, optional={"force": st.booleans() | JSON, "reason": TEXT | JSON}
)


def encoded(values: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """JSON text of `values` as a client may send it: escaped ASCII, or raw
    UTF-8 (surrogates passed through: not valid UTF-8)."""
    return st.builds(
        lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only).encode(
            "utf-8", "surrogatepass"
        ),
        values,
        st.booleans(),
    )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user(make_user):
    return make_user("view", "add", "interrupt")


@pytest.fixture
def api(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture
def target() -> Execution:
    """Running at first; the examples that interrupt it move it on."""
    return execution(Status.RUNNING)


def post(client: Client, url: str, body: bytes):
    return client.generic("POST", url, body, content_type="application/json")


def check_answer(response, documented: set[int], before: list[dict]) -> Any:
    """A documented status with a JSON body; a refusal changed nothing."""
    assert response.status_code in documented, response.content[:500]
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    if response.status_code >= 400:
        assert isinstance(answer["error"], str)
        assert isinstance(answer["message"], str)
        assert table() == before
    else:
        assert Execution.objects.filter(pk=answer["id"]).exists()
    return answer


@pytest.mark.django_db
@HTTP
@given(body=encoded(START))
def test_api_start_answers_any_request_as_documented(api, body):
    before = table()

    response = post(api, "/api/executions/", body)

    check_answer(response, {200, 201, 400, 413}, before)


@pytest.mark.django_db
@HTTP
@given(body=encoded(INTERRUPT))
def test_api_interrupt_answers_any_request_as_documented(api, target, body):
    before = table()

    response = post(api, f"/api/executions/{target.pk}/interrupt/", body)

    answer = check_answer(response, {202, 400, 409, 413}, before)
    if response.status_code == 202:
        assert answer["status"] in (Status.INTERRUPTING, Status.INTERRUPTED)


@pytest.mark.django_db
@hypothesis.settings(HTTP, max_examples=50)
@given(body=encoded(JSON) | st.binary(max_size=64), to_start=st.booleans())
def test_api_answers_any_body_as_documented(api, target, body, to_start):
    url = "/api/executions/" if to_start else f"/api/executions/{target.pk}/interrupt/"
    before = table()

    response = post(api, url, body)

    check_answer(
        response, {200, 201, 400, 413} if to_start else {202, 400, 409, 413}, before
    )


@pytest.mark.django_db
@hypothesis.settings(HTTP, max_examples=50)
@given(
    execution_id=st.text(
        st.characters(exclude_characters="/", exclude_categories=["Cs"]), min_size=1
    )
)
def test_api_answers_any_unknown_id_with_404(api, execution_id):
    # A "/" would make another URL, not another ID; a lone surrogate cannot be
    # put in a URL at all (it has no UTF-8 encoding to percent-encode).
    path = quote(execution_id, safe="")
    before = table()

    responses = [
        api.get(f"/api/executions/{path}/"),
        post(api, f"/api/executions/{path}/interrupt/", b"{}"),
    ]

    for response in responses:
        assert check_answer(response, {404}, before) == {
            "error": "not_found",
            "message": f"No execution with ID {execution_id!r}.",
        }


# -- the websocket protocol --------------------------------------------------------

# Well-formed messages with hostile values, sent as escaped ASCII or raw text.
MESSAGE = st.fixed_dictionaries(
    {"type": st.sampled_from(["ping", "resync", "interrupt"])},
    optional={"force": st.booleans() | JSON, "reason": TEXT | JSON},
)
MESSAGE_FRAME = st.builds(
    lambda value, ascii_only: {"text": json.dumps(value, ensure_ascii=ascii_only)},
    MESSAGE,
    st.booleans(),
)
# Anything else a client can send: any JSON, any text, any bytes.
OTHER_FRAME = (
    st.builds(lambda value: {"text": json.dumps(value)}, JSON)
    | st.builds(lambda text: {"text": text}, st.text(max_size=30))
    | st.builds(lambda data: {"bytes": data}, st.binary(max_size=30))
)
PATHS = st.sampled_from(["/ws/executions/{}/", "/ws/executions/"])
#: What a socket may send back: a direct answer to a client message...
ANSWERS = {"error", "pong", "snapshot", "interrupt"}
#: ...or an event from the group (an interrupt changes the status).
EVENTS = {"step", "status", "finished"}
ERROR_CODES = {
    "bad_json",
    "bad_message",
    "invalid_params",
    "unknown_type",
    "too_large",
    "not_running",
    "forbidden",
    "not_found",
}


#: Seconds to wait for one answer: ample in-process, and short, so that a
#: failing example (a crashed consumer answers nothing) shrinks quickly.
ANSWER_TIMEOUT = 2


async def receive(communicator) -> dict:
    return await communicator.receive_json_from(timeout=ANSWER_TIMEOUT)


def is_ping(frame: dict) -> bool:
    try:
        return json.loads(frame.get("text") or "null") == {"type": "ping"}
    except ValueError:
        return False


async def exchange(path: str, user, frames: list[dict]) -> list[dict]:
    """Send `frames`, then a ping; return everything received up to the
    ping's pong. Getting that pong proves the socket stayed open."""
    async with socket(path, user) as (communicator, connected):
        assert connected
        assert (await receive(communicator))["type"] == "snapshot"
        for frame in frames:
            await communicator.send_input({"type": "websocket.receive", **frame})
        await communicator.send_json_to({"type": "ping"})
        pongs = 1 + sum(is_ping(frame) for frame in frames)
        received: list[dict] = []
        while sum(message["type"] == "pong" for message in received) < pongs:
            received.append(await receive(communicator))
    return received


def is_resync(frame: dict) -> bool:
    try:
        return json.loads(frame.get("text") or "null") == {"type": "resync"}
    except ValueError:
        return False


def check_answers(received: list[dict], frames: list[dict]) -> None:
    """One answer per frame (and the final pong), each valid, but resyncs:
    their snapshots are coalesced, and may come after the pong; events only
    besides."""
    answers = [
        message
        for message in received
        if message["type"] in ANSWERS and message["type"] != "snapshot"
    ]
    resyncs = sum(is_resync(frame) for frame in frames)
    assert len(answers) == len(frames) - resyncs + 1
    assert sum(message["type"] == "snapshot" for message in received) <= resyncs
    assert {message["type"] for message in received} <= ANSWERS | EVENTS
    for message in answers:
        if message["type"] == "error":
            assert message["code"] in ERROR_CODES
            assert isinstance(message["message"], str)


@pytest.mark.django_db(transaction=True)
@WEBSOCKET
@given(frames=st.lists(MESSAGE_FRAME, min_size=1, max_size=4), path=PATHS)
async def test_websocket_answers_any_message_and_stays_open(user, target, frames, path):
    received = await exchange(path.format(target.pk), user, frames)

    check_answers(received, frames)


@pytest.mark.django_db(transaction=True)
@hypothesis.settings(WEBSOCKET, max_examples=25)
@given(frames=st.lists(OTHER_FRAME, min_size=1, max_size=4), path=PATHS)
async def test_websocket_refuses_any_other_frame_and_stays_open(
    user, target, frames, path
):
    before = await database_sync_to_async(table)()

    received = await exchange(path.format(target.pk), user, frames)

    check_answers(received, frames)
    assert await database_sync_to_async(table)() == before
