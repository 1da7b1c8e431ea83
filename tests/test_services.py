"""The service every door calls: permissions, validation, lookups and the
durable interrupt request with its audit record."""

from __future__ import annotations

import pytest
from django.utils import timezone

from executions import services
from executions.engine import registry
from executions.models import Execution, Source, Status
from executions.services import (
    NotRunning,
    ParamsError,
    PermissionDenied,
    UnknownCmd,
    UnknownExecution,
)
from tests.factories import UNKNOWN_ID

pytestmark = pytest.mark.django_db

STEP_IDS = ["step-1", "step-2", "step-3"]


def start(user=None, **options) -> Execution:
    return services.start_execution(
        "demo.steps",
        options.pop("params", {"count": 3}),
        user=user,
        source=options.pop("source", Source.API),
        dispatch=False,
        **options,
    ).execution


def running_execution() -> Execution:
    execution = start()
    assert execution.claim("runner-1")
    return execution


def interrupt(execution_id, user=None, **options) -> services.InterruptResult:
    return services.request_interrupt(
        execution_id, user=user, source=options.pop("source", Source.API), **options
    )


def fresh(execution: Execution) -> Execution:
    return Execution.objects.get(pk=execution.pk)


# -- permissions -----------------------------------------------------------------------


def test_start_without_add_permission_is_denied_and_records_nothing(make_user):
    user = make_user("view", "interrupt")

    with pytest.raises(PermissionDenied) as error:
        start(user)

    assert str(error.value) == "You do not have permission to add executions."
    assert Execution.objects.count() == 0


def test_interrupt_without_interrupt_permission_is_denied_and_changes_nothing(
    make_user,
):
    execution = running_execution()
    user = make_user("view", "add")

    with pytest.raises(PermissionDenied) as error:
        interrupt(execution.pk, user)

    row = fresh(execution)
    assert str(error.value) == "You do not have permission to interrupt executions."
    assert (row.status, row.interrupt_requested_at) == (Status.RUNNING, None)


def test_view_without_view_permission_is_denied(make_user):
    execution = start()
    user = make_user("add", "interrupt")

    with pytest.raises(PermissionDenied) as get_error:
        services.get_execution(execution.pk, user=user)
    with pytest.raises(PermissionDenied) as list_error:
        services.list_executions(user=user)

    message = "You do not have permission to view executions."
    assert str(get_error.value) == str(list_error.value) == message


def test_each_action_is_allowed_with_its_permission(make_user):
    user = make_user("view", "add", "interrupt", username="alice")

    execution = start(user)
    seen = services.get_execution(execution.pk, user=user)
    listed = list(services.list_executions(user=user))
    result = interrupt(execution.pk, user)

    assert seen.pk == execution.pk
    assert [row.pk for row in listed] == [execution.pk]
    assert result.result == "interrupted"
    assert fresh(execution).created_by == user


def test_an_inactive_user_is_denied_whatever_their_permissions(make_user):
    user = make_user("view", "add", "interrupt", is_active=False)

    allowed = [services.can(user, action) for action in ("view", "add", "interrupt")]

    assert allowed == [False, False, False]


def test_the_terminal_user_none_may_do_everything():
    allowed = [services.can(None, action) for action in ("view", "add", "interrupt")]

    assert allowed == [True, True, True]


# -- starting: bad input is refused and records nothing --------------------------------


def test_start_refuses_an_unknown_cmd():
    with pytest.raises(UnknownCmd) as error:
        services.start_execution("demo.nope", {}, source=Source.API, dispatch=False)

    known = ", ".join(cmd.name for cmd in registry)
    assert str(error.value) == f"Unknown command 'demo.nope'. Known commands: {known}."
    assert Execution.objects.count() == 0


def test_start_refuses_invalid_params_naming_each_field():
    params = {"count": 0, "seconds": "slow", "colour": "red"}

    with pytest.raises(ParamsError) as error:
        start(params=params)

    assert error.value.errors == {
        "colour": "unknown param; expected one of: cooperative, count, fail_at, "
        "seconds, ticks",
        "count": "must be at least 1",
        "seconds": "must be a number",
    }
    assert Execution.objects.count() == 0


def test_start_refuses_a_bad_strategy():
    with pytest.raises(ParamsError) as error:
        start(strategy="sometimes")

    assert error.value.errors == {
        "strategy": "Unknown interrupt strategy 'sometimes': use finish-current, "
        "poll-next-n:N (N a whole number) or ignore."
    }
    assert Execution.objects.count() == 0


@pytest.mark.parametrize("profile", ["x" * 201, "sta\nging"])
def test_start_refuses_a_bad_profile(profile):
    with pytest.raises(ParamsError) as error:
        start(profile=profile)

    assert error.value.errors == {"profile": "must be at most 200 printable characters"}
    assert Execution.objects.count() == 0


def test_start_records_a_queued_execution_with_cleaned_params(make_user):
    user = make_user("add")

    execution = start(
        user,
        params={"count": "3", "cooperative": "false"},
        strategy="poll-next-n:1",
        source=Source.WEB,
    )

    row = fresh(execution)
    assert row.status == Status.QUEUED
    assert row.params == {
        "count": 3,
        "seconds": 1.0,
        "ticks": 10,
        "fail_at": None,
        "cooperative": False,
    }
    assert (row.strategy, row.created_from) == ("poll-next-n:1", Source.WEB)
    assert [(s["id"], s["status"]) for s in row.steps] == [
        (step_id, "pending") for step_id in STEP_IDS
    ]


# -- looking up ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "execution_id", [UNKNOWN_ID, "not-a-uuid", "", None, 42, "../etc"]
)
def test_get_execution_refuses_unknown_and_malformed_ids(execution_id):
    start()

    with pytest.raises(UnknownExecution) as error:
        services.get_execution(execution_id)

    assert str(error.value) == f"No execution with ID {execution_id!r}."


@pytest.mark.parametrize("execution_id", [UNKNOWN_ID, "not-a-uuid"])
def test_interrupt_refuses_unknown_and_malformed_ids(execution_id):
    execution = running_execution()

    with pytest.raises(UnknownExecution):
        interrupt(execution_id)

    assert fresh(execution).status == Status.RUNNING


def test_list_executions_filters_on_status():
    queued = start()
    live = running_execution()

    statuses = {
        status: [row.pk for row in services.list_executions(status=status)]
        for status in ("queued", "running", "succeeded")
    }

    assert statuses == {"queued": [queued.pk], "running": [live.pk], "succeeded": []}


# -- interrupting ----------------------------------------------------------------------


def test_interrupt_of_a_queued_execution_ends_it_with_nothing_processed():
    execution = start()

    result = interrupt(str(execution.pk))

    row = fresh(execution)
    assert result.result == "interrupted"
    assert result.execution.status == Status.INTERRUPTED
    assert row.status == Status.INTERRUPTED
    assert row.outcome == {
        "kind": "interrupted",
        "steps_processed": [],
        "steps_not_processed": STEP_IDS,
        "errors": {},
    }
    assert {s["status"] for s in row.steps} == {"skipped"}


def test_interrupt_of_a_running_execution_is_requested_then_already():
    execution = running_execution()

    first = interrupt(execution.pk)
    second = interrupt(execution.pk)
    forced = interrupt(execution.pk, force=True)

    assert [first.result, second.result, forced.result] == [
        "requested",
        "already",
        "escalated",
    ]
    assert fresh(execution).status == Status.INTERRUPTING
    assert fresh(execution).interrupt_force


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.INTERRUPTED])
def test_interrupt_of_a_finished_execution_is_not_running(status):
    execution = running_execution()
    execution.finish(status, outcome={"kind": "complete"}, steps=execution.steps)

    with pytest.raises(NotRunning) as error:
        interrupt(execution.pk, force=True, reason="too late")

    row = fresh(execution)
    assert error.value.status == status
    assert str(error.value) == (
        f"Execution {execution.pk} is not running: it is {status.value}."
    )
    assert (row.status, row.interrupt_snapshot()) == (status, None)


def test_interrupt_refuses_an_unknown_source():
    execution = running_execution()

    with pytest.raises(ValueError) as error:
        interrupt(execution.pk, source="email")

    assert str(error.value) == "Unknown source 'email'."
    assert fresh(execution).status == Status.RUNNING


def test_interrupt_records_who_from_where_why_and_when(make_user):
    execution = running_execution()
    user = make_user("view", "interrupt", username="alice")
    before = timezone.now()

    interrupt(execution.pk, user, source=Source.WEB, reason="wrong branch")

    row = fresh(execution)
    snapshot = row.snapshot()["interrupt"]
    assert before <= row.interrupt_requested_at <= timezone.now()
    assert row.interrupt_requested_by == user
    assert {key: snapshot[key] for key in ("by", "source", "force", "reason")} == {
        "by": "alice",
        "source": "web",
        "force": False,
        "reason": "wrong branch",
    }


def test_interrupt_from_the_terminal_records_the_login_name():
    execution = running_execution()

    interrupt(execution.pk, source=Source.CLI, by_name="ops@build-01", force=True)

    snapshot = fresh(execution).snapshot()["interrupt"]
    assert (snapshot["by"], snapshot["source"], snapshot["force"]) == (
        "ops@build-01",
        "cli",
        True,
    )


def test_interrupt_refuses_a_reason_over_2000_characters():
    execution = running_execution()

    with pytest.raises(services.ParamsError) as raised:
        interrupt(execution.pk, reason="x" * 2001)

    assert raised.value.errors == {"reason": "must be at most 2000 characters"}
    assert fresh(execution).interrupt_requested_at is None


def test_interrupt_needs_view_too(make_user):
    execution = running_execution()

    with pytest.raises(PermissionDenied):
        interrupt(execution.pk, make_user("interrupt"))

    assert fresh(execution).interrupt_requested_at is None
