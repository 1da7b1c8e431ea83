"""The JSON API (executions/api.py): every status code of the contract, and
bad input refused without changing anything."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client

from executions import services
from executions.engine import registry
from executions.models import Execution, LogLine, Source, Status
from executions.services import LOG_PAGE
from tests.factories import UNKNOWN_ID

LIST = "/api/executions/"
DETAIL = "/api/executions/{}/"
INTERRUPT = "/api/executions/{}/interrupt/"
LOGS = "/api/executions/{}/logs/"
FAST = {"count": 1, "seconds": 0, "ticks": 1}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def login(client, make_user):
    """Log the test client in as a new user allowed the given actions."""

    def log_in(*actions: str):
        user = make_user(*actions)
        client.force_login(user)
        return user

    return log_in


def call(client: Client, method: str, url: str, data=None, **extra):
    """A request whose body is `data` as JSON (bytes as they are; none if None)."""
    if not isinstance(data, bytes):
        data = b"" if data is None else json.dumps(data).encode()
    return client.generic(method, url, data, content_type="application/json", **extra)


def record(status: str = Status.QUEUED, **kwargs) -> Execution:
    """An execution nobody runs, moved to `status` as a runner would.

    The API's dispatch happens on commit, which the test transaction never
    does: these tests see only what the request itself changed."""
    execution = services.start_execution(
        "demo.steps", FAST, source=Source.CLI, dispatch=False, **kwargs
    ).execution
    if status != Status.QUEUED:
        execution.claim("test-runner")
    if status == Status.SUCCEEDED:
        execution.finish(status, outcome={"kind": "complete"}, steps=execution.steps)
    return execution


def unchanged(execution: Execution) -> bool:
    return Execution.objects.get(pk=execution.pk).snapshot() == execution.snapshot()


# -- POST /api/executions/ ---------------------------------------------------------


@pytest.mark.django_db
def test_create_returns_201_with_the_snapshot(client, login):
    user = login("view", "add")

    response = call(client, "POST", LIST, {"cmd": "demo.steps", "params": {"count": 2}})

    assert response.status_code == 201
    execution = Execution.objects.get()
    assert response.json() == execution.snapshot()
    assert response["Location"] == DETAIL.format(execution.id)
    assert (execution.created_by, execution.created_from) == (user, Source.API)
    assert execution.params["count"] == 2
    assert execution.status == Status.QUEUED


@pytest.mark.django_db
def test_create_for_a_busy_profile_returns_200_with_the_active_one(client, login):
    login("view", "add")
    active = record(Status.RUNNING, profile="staging")

    response = call(client, "POST", LIST, {"cmd": "demo.steps", "profile": "staging"})

    assert response.status_code == 200
    assert response.json()["id"] == str(active.id)
    assert Execution.objects.count() == 1


@pytest.mark.django_db
def test_create_unknown_cmd_is_400(client, login):
    login("view", "add")

    response = call(client, "POST", LIST, {"cmd": "nope"})

    assert response.status_code == 400
    known = sorted(cmd.name for cmd in registry)
    assert response.json() == {
        "error": "unknown_cmd",
        "message": f"Unknown command 'nope'. Known commands: {', '.join(known)}.",
        "cmd": "nope",
        "known": known,
    }
    assert not Execution.objects.exists()


UNKNOWN_FIELD = (
    "unknown field; expected one of: "
    "cmd, params, profile, strategy, timeout, force_after"
)
STRATEGY_ERROR = (
    "Unknown interrupt strategy 'sometimes': use finish-current, "
    "poll-next-n:N (N a whole number) or ignore."
)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"params": {"count": 0}}, {"count": "must be at least 1"}),
        ({"params": [1]}, {"params": "must be an object of name: value"}),
        ({"strategy": "sometimes"}, {"strategy": STRATEGY_ERROR}),
        ({"strategy": ["ignore"]}, {"strategy": "must be a string"}),
        ({"profile": 7}, {"profile": "must be a string"}),
        (
            {"profile": "x" * 201},
            {"profile": "must be at most 200 printable characters"},
        ),
        ({"cmd": 5}, {"cmd": "must be a string"}),
        ({"cmd": None}, {"cmd": "a value is required"}),
        ({"priority": 1}, {"priority": UNKNOWN_FIELD}),
    ],
)
@pytest.mark.django_db
def test_create_invalid_params_is_400_with_field_errors(client, login, body, fields):
    login("view", "add")

    response = call(client, "POST", LIST, {"cmd": "demo.steps", **body})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_params"
    assert response.json()["fields"] == fields
    assert not Execution.objects.exists()


NOT_JSON = "The request body is not valid JSON."
NOT_OBJECT = "The request body must be a JSON object."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", NOT_JSON),
        (b"", NOT_JSON),
        (b"\xff\xfe{", NOT_JSON),
        (b"[" * 100_000, NOT_JSON),
        (b'["demo.steps"]', NOT_OBJECT),
        (b'"demo.steps"', NOT_OBJECT),
    ],
)
@pytest.mark.django_db
def test_create_bad_json_is_400(client, login, body, message):
    login("view", "add")

    response = call(client, "POST", LIST, body)

    assert response.status_code == 400
    assert response.json() == {"error": "bad_json", "message": message}
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_create_body_over_the_limit_is_413(client, login, settings):
    login("view", "add")
    padding = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = call(client, "POST", LIST, {"cmd": "demo.steps", "profile": padding})

    assert response.status_code == 413
    assert response.json() == {
        "error": "too_large",
        "message": "The request body is over 262144 bytes.",
    }
    assert not Execution.objects.exists()


# -- errors every endpoint shares ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "allowed", "action"),
    [
        ("POST", LIST, ["view", "interrupt"], "add"),
        ("GET", LIST, ["add", "interrupt"], "view"),
        ("GET", DETAIL, ["add", "interrupt"], "view"),
        ("GET", LOGS, ["add", "interrupt"], "view"),
        ("POST", INTERRUPT, ["view", "add"], "interrupt"),
    ],
)
@pytest.mark.django_db
def test_api_without_permission_is_403(client, login, method, url, allowed, action):
    login(*allowed)
    execution = record(Status.RUNNING)

    response = call(client, method, url.format(execution.id), {})

    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "message": f"You do not have permission to {action} executions.",
    }
    assert unchanged(execution)
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", LIST),
        ("GET", LIST),
        ("GET", DETAIL),
        ("GET", LOGS),
        ("POST", INTERRUPT),
    ],
)
@pytest.mark.django_db
def test_api_without_login_is_403_not_a_redirect(client, method, url):
    execution = record(Status.RUNNING)

    response = call(client, method, url.format(execution.id))

    assert response.status_code == 403
    assert response.json() == {"error": "not_authenticated", "message": "Log in first."}
    assert unchanged(execution)
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [
        ("PUT", LIST, "GET, POST"),
        ("DELETE", DETAIL, "GET"),
        ("POST", DETAIL, "GET"),
        ("GET", INTERRUPT, "POST"),
        ("POST", LOGS, "GET"),
    ],
)
@pytest.mark.django_db
def test_api_wrong_method_is_405_with_allow(client, login, method, url, allow):
    login("view", "add", "interrupt")
    execution = record(Status.RUNNING)

    response = call(client, method, url.format(execution.id))

    assert response.status_code == 405
    assert response["Allow"] == allow
    assert response.json() == {
        "error": "method_not_allowed",
        "message": f"Use {allow.replace(', ', ' or ')} here.",
    }
    assert unchanged(execution)


@pytest.mark.parametrize("url", [DETAIL, LOGS, INTERRUPT])
@pytest.mark.parametrize("execution_id", [UNKNOWN_ID, "not-a-uuid"])
@pytest.mark.django_db
def test_api_unknown_or_malformed_id_is_404(client, login, url, execution_id):
    login("view", "interrupt")

    response = call(
        client, "POST" if url == INTERRUPT else "GET", url.format(execution_id)
    )

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": f"No execution with ID {execution_id!r}.",
    }


# -- GET /api/executions/ and /api/executions/<id>/ --------------------------------


@pytest.mark.django_db
def test_list_returns_snapshots_newest_first(client, login):
    login("view")
    older, newer = record(), record()

    response = client.get(LIST)

    assert response.status_code == 200
    assert response.json() == {"executions": [newer.snapshot(), older.snapshot()]}


@pytest.mark.django_db
def test_list_filters_on_status_and_limits(client, login):
    login("view")
    record(Status.RUNNING)
    queued = [record(), record()]

    response = client.get(LIST, {"status": "queued", "limit": "1"})

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["executions"]] == [str(queued[1].id)]


BAD_STATUS = {
    "error": "invalid_status",
    "message": "Unknown status 'sleeping'.",
    "allowed": list(Status.values),
}
BAD_LIMIT = {
    "error": "invalid_params",
    "message": "limit: must be a whole number from 1 to 500",
    "fields": {"limit": "must be a whole number from 1 to 500"},
}


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ({"status": "sleeping"}, BAD_STATUS),
        *(({"limit": limit}, BAD_LIMIT) for limit in ["0", "501", "-1", "1.5", "٣"]),
    ],
)
@pytest.mark.django_db
def test_list_bad_query_is_400(client, login, query, body):
    login("view")

    response = client.get(LIST, query)

    assert response.status_code == 400
    assert response.json() == body


@pytest.mark.django_db
def test_detail_returns_the_snapshot(client, login):
    login("view")
    execution = record(Status.RUNNING)

    response = client.get(DETAIL.format(execution.id))

    assert response.status_code == 200
    assert response.json() == execution.snapshot()


# -- POST /api/executions/<id>/interrupt/ ------------------------------------------


@pytest.mark.django_db
def test_interrupt_running_is_202_interrupting_and_idempotent(client, login):
    user = login("view", "interrupt")
    execution = record(Status.RUNNING)
    url = INTERRUPT.format(execution.id)

    first = call(client, "POST", url, {"reason": "wrong branch"})
    again = call(client, "POST", url, {})
    forced = call(client, "POST", url, {"force": True})

    assert [first.status_code, again.status_code, forced.status_code] == [202] * 3
    assert first.json()["status"] == again.json()["status"] == "interrupting"
    assert first.json()["interrupt"] == {
        "requested_at": first.json()["interrupt"]["requested_at"],
        "by": user.username,
        "source": "api",
        "force": False,
        "reason": "wrong branch",
        "delivered_at": None,
        "requests": [
            {
                "at": first.json()["interrupt"]["requested_at"],
                "by": user.username,
                "source": "api",
                "force": False,
                "reason": "wrong branch",
            }
        ],
    }
    assert again.json() == first.json()
    execution.refresh_from_db()
    assert forced.json() == execution.snapshot()
    assert execution.interrupt_force is True


@pytest.mark.django_db
def test_interrupt_queued_with_empty_body_is_202_interrupted(client, login):
    login("view", "interrupt")
    execution = record()

    response = client.generic("POST", INTERRUPT.format(execution.id))

    assert response.status_code == 202
    assert response.json()["status"] == "interrupted"
    assert Execution.objects.get().status == Status.INTERRUPTED


@pytest.mark.django_db
def test_interrupt_finished_is_409(client, login):
    login("view", "interrupt")
    execution = record(Status.SUCCEEDED)

    response = call(client, "POST", INTERRUPT.format(execution.id), {})

    assert response.status_code == 409
    assert response.json() == {
        "error": "not_running",
        "message": f"Execution {execution.id} is not running: it is succeeded.",
        "status": "succeeded",
    }
    assert unchanged(execution)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"force": "yes"}, "invalid_params"),
        ({"reason": 3}, "invalid_params"),
        ({"now": True}, "invalid_params"),
        (b"[true]", "bad_json"),
        (b"{force", "bad_json"),
    ],
)
@pytest.mark.django_db
def test_interrupt_bad_body_is_400(client, login, body, error):
    login("view", "interrupt")
    execution = record(Status.RUNNING)

    response = call(client, "POST", INTERRUPT.format(execution.id), body)

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert unchanged(execution)


# -- CSRF ----------------------------------------------------------------------------


@pytest.fixture
def csrf_client(make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("view", "add", "interrupt"))
    return client


@pytest.mark.django_db
def test_post_without_csrf_token_is_403_json(csrf_client):
    execution = record(Status.RUNNING)

    responses = [
        call(csrf_client, "POST", LIST, {"cmd": "demo.steps"}),
        call(csrf_client, "POST", INTERRUPT.format(execution.id), {}),
    ]

    assert [response.status_code for response in responses] == [403, 403]
    assert responses[0].json() == {
        "error": "csrf_failed",
        "message": "CSRF check failed: send the csrftoken cookie's value in the "
        "X-CSRFToken header.",
        "reason": "CSRF cookie not set.",
    }
    assert unchanged(execution)
    assert Execution.objects.count() == 1


@pytest.mark.django_db
def test_post_with_the_token_from_a_get_succeeds(csrf_client):
    token = csrf_client.get(LIST).cookies["csrftoken"].value

    response = call(
        csrf_client, "POST", LIST, {"cmd": "demo.steps"}, HTTP_X_CSRFTOKEN=token
    )

    assert response.status_code == 201


@pytest.mark.django_db
def test_csrf_failure_outside_the_api_is_djangos_page():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/admin/login/", {"username": "a", "password": "b"})

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    assert b"CSRF verification failed" in response.content


# -- a real run ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_dispatches_a_run_that_finishes(client, login):
    login("view", "add")

    created = call(client, "POST", LIST, {"cmd": "demo.steps", "params": FAST}).json()
    deadline = time.monotonic() + 20
    snapshot = created
    while snapshot["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
        snapshot = client.get(DETAIL.format(created["id"])).json()

    assert snapshot["status"] == "succeeded"
    assert snapshot["outcome"]["steps_processed"] == ["step-1"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/nothing/", "/api/executions/a/b/", "/api/executions//interrupt/"]
)
def test_unknown_api_url_is_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": f"No API endpoint at {path}.",
    }


# -- GET /api/executions/<id>/logs/ ------------------------------------------------


def logged(execution: Execution, *steps: str | None, dropped: int = 0) -> None:
    """One log line per entry of `steps` (None: the run-level log), as a
    supervisor stores them."""
    LogLine.objects.bulk_create(
        LogLine(
            execution=execution,
            seq=seq,
            step=step or "",
            at=execution.created_at,
            level="stdout",
            text=f"line {seq}",
        )
        for seq, step in enumerate(steps, start=1)
    )
    Execution.objects.filter(pk=execution.pk).update(log_dropped=dropped)


@pytest.mark.django_db
def test_logs_returns_the_lines_in_order_with_next_and_dropped(client, login):
    login("view")
    execution = record(Status.RUNNING)
    logged(execution, "step-1", None, dropped=7)

    response = call(client, "GET", LOGS.format(execution.id))

    assert response.status_code == 200
    at = execution.created_at.isoformat(timespec="milliseconds")
    assert response.json() == {
        "lines": [
            {
                "seq": 1,
                "step": "step-1",
                "at": at.replace("+00:00", "Z"),
                "level": "stdout",
                "text": "line 1",
            },
            {
                "seq": 2,
                "step": None,
                "at": at.replace("+00:00", "Z"),
                "level": "stdout",
                "text": "line 2",
            },
        ],
        "next": 2,
        "dropped": 7,
    }


@pytest.mark.django_db
def test_logs_after_and_step_select_the_lines(client, login):
    login("view")
    execution = record(Status.RUNNING)
    logged(execution, "step-1", None, "step-1", "step-1")

    after = call(client, "GET", LOGS.format(execution.id) + "?after=2").json()
    step = call(client, "GET", LOGS.format(execution.id) + "?step=step-1&after=1")
    done = call(client, "GET", LOGS.format(execution.id) + "?after=4").json()

    assert [line["seq"] for line in after["lines"]] == [3, 4]
    assert [line["seq"] for line in step.json()["lines"]] == [3, 4]
    assert done == {"lines": [], "next": 4, "dropped": 0}


@pytest.mark.django_db
def test_logs_pages_are_bounded_and_next_continues(client, login):
    login("view")
    execution = record(Status.RUNNING)
    logged(execution, *["step-1"] * (LOG_PAGE + 5))

    first = call(client, "GET", LOGS.format(execution.id)).json()
    second = call(client, "GET", LOGS.format(execution.id) + f"?after={first['next']}")

    assert len(first["lines"]) == LOG_PAGE
    assert first["next"] == LOG_PAGE
    assert [line["seq"] for line in second.json()["lines"]] == list(
        range(LOG_PAGE + 1, LOG_PAGE + 6)
    )


@pytest.mark.parametrize("after", ["-1", "1.5", "x", "١", "9" * 20, "9" * 5000])
@pytest.mark.django_db
def test_logs_bad_after_is_400(client, login, after):
    login("view")
    execution = record(Status.RUNNING)

    response = client.get(LOGS.format(execution.id), {"after": after})

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_params",
        "message": "after: must be a log line's seq: a whole number, 0 or more",
        "fields": {"after": "must be a log line's seq: a whole number, 0 or more"},
    }


@pytest.mark.django_db
def test_logs_unknown_step_is_400(client, login):
    login("view")
    execution = record(Status.RUNNING)

    response = call(client, "GET", LOGS.format(execution.id) + "?step=step-9")

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "step": f"execution {execution.id} has no step 'step-9'"
    }


@pytest.mark.django_db
def test_logs_of_an_unknown_id_is_404_whatever_after_says(client, login):
    login("view")

    response = call(client, "GET", LOGS.format(uuid.uuid4()) + "?after=x")

    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeout", 0, "must be more than 0 and at most 31536000 seconds"),
        ("timeout", -1, "must be more than 0 and at most 31536000 seconds"),
        ("timeout", 10**400, "must be more than 0 and at most 31536000 seconds"),
        ("timeout", 1e300, "must be more than 0 and at most 31536000 seconds"),
        ("timeout", "10", "must be a number of seconds"),
        ("timeout", True, "must be a number of seconds"),
        ("force_after", 0, "must be more than 0 and at most 31536000 seconds"),
        ("force_after", "soon", "must be a number of seconds"),
        ("force_after", [1], "must be a number of seconds"),
    ],
)
def test_create_refuses_bad_timeouts_with_400_changing_nothing(
    client, login, field, value, message
):
    login("view", "add")

    response = call(
        client, "POST", "/api/executions/", {"cmd": "demo.steps", field: value}
    )

    assert response.status_code == 400
    assert response.json()["fields"] == {field: message}
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_create_keeps_timeout_and_force_after(client, login):
    login("view", "add")

    response = call(
        client,
        "POST",
        "/api/executions/",
        {"cmd": "demo.steps", "params": FAST, "timeout": 90, "force_after": 2.5},
    )

    assert response.status_code == 201
    assert (response.json()["timeout"], response.json()["force_after"]) == (90, 2.5)
