from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from executions import services
from executions.models import Execution, Status
from tests.factories import UNKNOWN_ID


@pytest.fixture
def running(db):
    execution = services.start_execution(
        "demo.steps", {}, source="cli", dispatch=False
    ).execution
    execution.claim("test-runner")
    return execution


def test_interrupt_running_records_the_request(running, capsys):
    call_command("interrupt", str(running.id), "--reason", "deploy freeze")

    running.refresh_from_db()
    assert running.status == Status.INTERRUPTING
    assert running.interrupt_source == "cli"
    assert running.interrupt_reason == "deploy freeze"
    assert running.interrupt_requested_by_name
    assert "Interrupt requested" in capsys.readouterr().out


def test_interrupt_force_escalates(running, capsys):
    call_command("interrupt", str(running.id))

    call_command("interrupt", str(running.id), "--force")

    running.refresh_from_db()
    assert running.interrupt_force is True
    assert "Force requested: steps in flight" in capsys.readouterr().out


def test_interrupt_queued_ends_it(db, capsys):
    queued = services.start_execution(
        "demo.steps", {"count": 2}, source="cli", dispatch=False
    ).execution

    call_command("interrupt", str(queued.id))

    queued.refresh_from_db()
    assert queued.status == Status.INTERRUPTED
    assert queued.outcome["steps_not_processed"] == ["step-1", "step-2"]
    assert "Interrupted before it started: no step ran." in capsys.readouterr().out


@pytest.mark.parametrize("execution_id", ["nope", "123", UNKNOWN_ID])
def test_interrupt_unknown_id_exits_2(db, execution_id):
    with pytest.raises(CommandError) as raised:
        call_command("interrupt", execution_id)

    assert raised.value.returncode == 2
    assert str(raised.value) == f"No execution with ID {execution_id!r}."


def test_interrupt_finished_exits_1_and_changes_nothing(running):
    running.finish(Status.SUCCEEDED, outcome={"kind": "complete"}, steps=[])

    with pytest.raises(CommandError) as raised:
        call_command("interrupt", str(running.id))

    assert raised.value.returncode == 1
    assert str(raised.value) == (
        f"Execution {running.id} is not running: it is succeeded."
    )
    running.refresh_from_db()
    assert running.status == Status.SUCCEEDED
    assert running.interrupt_requested_at is None
    assert Execution.objects.count() == 1
