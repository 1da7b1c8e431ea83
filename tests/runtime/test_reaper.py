"""Nothing stuck, ever: rows whose supervisor is gone are ended, by the
commands on their way and by servers from their start."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from django.core.management import call_command

from executions import services
from executions.models import Execution, Source, Status
from executions.runtime.identity import HOST
from tests.factories import execution

pytestmark = pytest.mark.django_db(transaction=True)


def dead_identity() -> str:
    """The identity of a supervisor on this host whose process has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{HOST}:{process.pid}:deadbeef"


def test_executions_reaps_a_running_row_whose_supervisor_died(capsys):
    orphan = execution(Status.RUNNING)
    Execution.objects.filter(pk=orphan.pk).update(supervisor=dead_identity())

    call_command("executions")

    row = Execution.objects.get(pk=orphan.pk)
    assert row.status == Status.LOST
    assert row.outcome["kind"] == "lost"
    assert f"{orphan.pk}  demo.steps  lost" in capsys.readouterr().out


def test_a_queued_row_whose_creator_died_is_ended_lost():
    orphan = execution(Status.QUEUED)
    Execution.objects.filter(pk=orphan.pk).update(supervisor=dead_identity())

    ended = services.reap_orphans()

    assert [snapshot["id"] for snapshot in ended] == [str(orphan.pk)]
    assert Execution.objects.get(pk=orphan.pk).status == Status.LOST


def test_a_queued_row_waiting_for_a_worker_is_left_alone():
    waiting = execution(Status.QUEUED)  # no supervisor named: a queue's

    assert services.reap_orphans() == []
    assert Execution.objects.get(pk=waiting.pk).status == Status.QUEUED


def test_a_live_supervisors_rows_are_left_alone():
    alive = execution(Status.RUNNING)
    Execution.objects.filter(pk=alive.pk).update(
        supervisor=services.supervisor_identity()
    )

    assert services.reap_orphans() == []


def test_interrupt_of_an_orphan_ends_it_at_once(capsys):
    orphan = execution(Status.RUNNING)
    Execution.objects.filter(pk=orphan.pk).update(supervisor="elsewhere:1:x")
    Execution.objects.filter(pk=orphan.pk).update(heartbeat_at=None)

    call_command("interrupt", str(orphan.pk), "--reason", "stuck")

    row = Execution.objects.get(pk=orphan.pk)
    assert row.status == Status.INTERRUPTED
    assert row.interrupt_reason == "stuck"
    assert capsys.readouterr().out == (
        f"{orphan.pk}: interrupted. Nobody was running it any more "
        "(its supervisor is gone): ended now.\n"
    )


def test_interrupt_of_a_live_run_does_not_end_it():
    alive = execution(Status.RUNNING)
    Execution.objects.filter(pk=alive.pk).update(
        supervisor=services.supervisor_identity()
    )

    result = services.request_interrupt(alive.pk, source=Source.CLI)

    assert result.result == services.Interruption.REQUESTED
    assert Execution.objects.get(pk=alive.pk).status == Status.INTERRUPTING


@pytest.mark.e2e
def test_kill_9_of_execute_leaves_a_row_executions_shows_lost(processes):
    terminal = processes.manage(
        "execute", "demo.steps", "--param", "count=2", "--param", "seconds=60"
    )
    execution_id = terminal.first_line()
    terminal.wait_for("running     step-1")

    terminal.popen.send_signal(signal.SIGKILL)
    terminal.wait()
    listing = processes.manage("executions")
    code = listing.wait()

    assert code == 0
    assert f"{execution_id}  demo.steps  lost" in listing.output
    assert Execution.objects.get(pk=execution_id).status == Status.LOST


@pytest.mark.e2e
def test_ctrl_c_right_after_the_id_interrupts_the_queued_run(processes):
    terminal = processes.manage(
        "execute", "demo.steps", "--param", "count=2", "--param", "seconds=5"
    )
    execution_id = terminal.first_line()

    terminal.signal(signal.SIGINT)
    code = terminal.wait()

    row = Execution.objects.get(pk=execution_id)
    assert code == 130
    assert row.status == Status.INTERRUPTED
    assert row.interrupt_source == Source.CLI


@pytest.mark.e2e
def test_execute_into_a_closed_pipe_runs_to_its_end(subprocess_env, manage_py):
    shell = subprocess.run(
        [
            "bash",
            "-c",
            " ".join(manage_py)
            + " execute demo.steps --param count=2 --param seconds=0.5 | head -1;"
            " exit ${PIPESTATUS[0]}",
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    execution_id = shell.stdout.strip()
    assert shell.returncode == 0, shell.stderr
    assert "BrokenPipe" not in shell.stderr
    deadline = time.monotonic() + 5
    row = Execution.objects.get(pk=execution_id)
    while row.status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.1)
        row.refresh_from_db()
    assert row.status == Status.SUCCEEDED
