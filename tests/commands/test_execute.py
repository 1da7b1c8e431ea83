from __future__ import annotations

import asyncio
import gc
import signal

import pytest
from django.core.management import CommandError, call_command

from executions import services
from executions.engine import InterruptSignal
from executions.models import Execution, Status
from executions.terminal import FORCED, GRACEFUL
from tests.factories import run_here
from tests.processes import Process


@pytest.fixture
def execute(manage_py, subprocess_env):
    """Start `manage.py execute ...` in a real subprocess."""
    started: list[Process] = []

    def run(*args: str) -> Process:
        process = Process([*manage_py, "execute", *args], subprocess_env)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


def demo_steps(*params: str) -> list[str]:
    return ["demo.steps", *[arg for p in params for arg in ("--param", p)]]


def test_execute_sigint_interrupts_gracefully(execute):
    # Step 2 lasts long enough that the SIGINT surely lands inside it.
    process = execute(*demo_steps("count=5", "seconds=2"))
    execution_id = process.first_line()
    process.wait_for("succeeded   step-1")

    process.signal(signal.SIGINT)
    code = process.wait()

    assert code == 130
    assert GRACEFUL in process.output
    assert "Not processed (4):" in process.output
    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == Status.INTERRUPTED
    assert execution.interrupt_source == "cli"
    assert execution.interrupt_force is False
    assert execution.outcome["kind"] == "interrupted"
    assert execution.outcome["steps_processed"] == ["step-1"]
    assert execution.outcome["steps_not_processed"] == [
        "step-2",
        "step-3",
        "step-4",
        "step-5",
    ]
    statuses = [step["status"] for step in execution.steps]
    assert statuses == ["succeeded", "interrupted", "skipped", "skipped", "skipped"]


def test_execute_second_sigint_forces(execute):
    # Non-cooperative steps ignore a graceful interrupt until they end, so only
    # a forced stop can end step-1 early.
    process = execute(*demo_steps("count=2", "seconds=30", "cooperative=false"))
    execution_id = process.first_line()
    process.wait_for("running     step-1")

    process.signal(signal.SIGINT)
    process.wait_for("Press Ctrl-C again to force")
    process.signal(signal.SIGINT)
    code = process.wait(timeout=20)

    assert code == 130
    assert FORCED in process.output
    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == Status.INTERRUPTED
    assert execution.interrupt_force is True
    assert execution.steps[0]["status"] == "interrupted"
    assert execution.steps[0]["error"] == "cancelled: the run was forced to stop"
    assert execution.outcome["steps_not_processed"] == ["step-1", "step-2"]


def test_execute_interrupted_from_another_process(execute, manage_py, subprocess_env):
    # Long steps: the interrupt lands (at the poll interval) well within one.
    process = execute(*demo_steps("count=2", "seconds=20"))
    execution_id = process.first_line()
    process.wait_for("running     step-1")

    other = Process(
        [*manage_py, "interrupt", execution_id, "--reason", "maintenance"],
        subprocess_env,
    )
    try:
        code = other.wait()
    finally:
        other.stop()

    assert code == 0
    assert "Interrupt requested" in other.output
    assert process.wait() == 130
    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == Status.INTERRUPTED
    assert execution.interrupt_source == "cli"
    assert execution.interrupt_reason == "maintenance"
    assert execution.outcome["steps_not_processed"] == ["step-1", "step-2"]
    assert execution.steps[0]["status"] == "interrupted"


def test_execute_json_prints_id_then_snapshot(execute):
    process = execute(*demo_steps("count=2", "seconds=0"), "--json")

    code = process.wait()

    assert code == 0
    execution_id = process.lines[0]
    assert '"status": "succeeded"' in process.output
    assert Execution.objects.get(pk=execution_id).status == Status.SUCCEEDED


def execute_importtime(manage_py, env, *args: str) -> tuple[int, list[str]]:
    """Run `execute` under `python -X importtime`: its output lines, each
    module it imported among them as `import time: ... | name`."""
    python, script = manage_py
    process = Process([python, "-X", "importtime", script, "execute", *args], env)
    return process.wait(), process.lines


def rich_imported_at(lines: list[str]) -> int | None:
    """The index of the first line that imports rich, if one does."""
    for index, line in enumerate(lines):
        name = line.rsplit("|", 1)[-1].strip()
        if line.startswith("import time:") and name.split(".")[0] == "rich":
            return index
    return None


def test_execute_json_never_imports_rich(manage_py, subprocess_env):
    args = (*demo_steps("count=1", "seconds=0"), "--json")

    code, lines = execute_importtime(manage_py, subprocess_env, *args)

    assert code == 0
    assert rich_imported_at(lines) is None


def test_execute_prints_the_id_before_importing_rich_for_the_bars(
    manage_py, subprocess_env
):
    args = demo_steps("count=1", "seconds=0")

    code, lines = execute_importtime(manage_py, subprocess_env, *args)

    assert code == 0
    printed = [line for line in lines if not line.startswith("import time:")]
    execution = Execution.objects.get(pk=printed[0])
    assert execution.status == Status.SUCCEEDED
    rich = rich_imported_at(lines)
    assert rich is not None
    assert lines.index(printed[0]) < rich


@pytest.mark.django_db(transaction=True)
def test_execute_in_process_leaves_the_callers_collector_alone(capsys):
    frozen = gc.get_freeze_count()

    call_command("execute", *demo_steps("count=1", "seconds=0"), "--json")

    assert gc.get_freeze_count() == frozen


@pytest.mark.django_db(transaction=True)
def test_execute_failing_step_exits_1_after_its_report(capsys):
    with pytest.raises(SystemExit) as raised:
        call_command("execute", *demo_steps("count=3", "seconds=0", "fail_at=2"))

    assert raised.value.code == 1
    execution = Execution.objects.get()
    assert execution.status == Status.FAILED
    assert execution.outcome["errors"] == {
        "step-2": "RuntimeError: step 2 failed as asked (fail_at=2)"
    }
    assert "Error in step-2" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_execute_succeeds_exits_0(capsys):
    call_command("execute", *demo_steps("count=2", "seconds=0"))

    out = capsys.readouterr().out
    execution = Execution.objects.get()
    assert out.splitlines()[0] == str(execution.id)
    assert execution.status == Status.SUCCEEDED
    assert "Processed (2):" in out


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "Unknown command 'nope'. Known commands: demo.deploy, "),
        (demo_steps("count=0"), "Invalid params:\n  count: must be at least 1"),
        (demo_steps("count=x"), "count: must be a whole number"),
        (demo_steps("nope=1"), "nope: unknown param; expected one of: "),
        (demo_steps("count"), "--param takes name=value, not 'count'."),
        (["demo.steps", "--strategy", "sometimes"], "Unknown interrupt strategy"),
        (["demo.steps", "--timeout", "0"], "Invalid --timeout: must be more than 0"),
        (["demo.steps", "--timeout", "-5"], "Invalid --timeout: must be more than 0"),
        (["demo.steps", "--timeout", "soon"], "Invalid --timeout: must be a number"),
        (["demo.steps", "--timeout", "1e400"], "Invalid --timeout: must be more than"),
        (["demo.steps", "--force-after", "nan"], "Invalid --force-after: must be"),
        (["demo.steps", "--force-after", "0"], "Invalid --force-after: must be"),
    ],
)
def test_execute_usage_errors_exit_2_and_change_nothing(args, message):
    with pytest.raises(CommandError) as raised:
        call_command("execute", *args)

    assert raised.value.returncode == 2
    assert message in str(raised.value)
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_execute_busy_profile_exits_3_with_the_active_id(capsys):
    active = services.start_execution(
        "demo.steps", {}, profile="staging", source="cli", dispatch=False
    ).execution

    with pytest.raises(CommandError) as raised:
        call_command("execute", "demo.steps", "--profile", "staging")

    assert raised.value.returncode == 3
    assert str(raised.value) == (
        f"Profile 'staging' is busy: execution {active.id} is queued."
    )
    assert capsys.readouterr().out.splitlines()[0] == str(active.id)
    assert Execution.objects.count() == 1


@pytest.fixture
def interrupted_after_step_1(transactional_db):
    """An execution of three steps interrupted after its first step."""
    execution = services.start_execution(
        "demo.steps",
        {"count": 3, "seconds": 0},
        strategy="poll-next-n:1",
        source="cli",
        dispatch=False,
    ).execution
    signal = InterruptSignal()
    signal.request()  # poll-next-n:1 lets exactly one step through
    return asyncio.run(run_here(execution.id, signal=signal))


def test_execute_resume_skips_steps_that_succeeded(interrupted_after_step_1, capsys):
    original = interrupted_after_step_1

    call_command("execute", "--resume", str(original.id))

    resumed = Execution.objects.exclude(pk=original.pk).get()
    assert capsys.readouterr().out.splitlines()[0] == str(resumed.id)
    assert resumed.resumed_from_id == original.id
    assert resumed.status == Status.SUCCEEDED
    assert resumed.params == original.params
    assert resumed.steps[0]["status"] == "succeeded"
    assert resumed.steps[0]["started_at"] is None  # not run again
    assert resumed.steps[1]["started_at"] is not None


def test_execute_resume_of_a_succeeded_execution_exits_2(interrupted_after_step_1):
    call_command("execute", "--resume", str(interrupted_after_step_1.id))
    resumed = Execution.objects.exclude(pk=interrupted_after_step_1.pk).get()

    with pytest.raises(CommandError) as raised:
        call_command("execute", "--resume", str(resumed.id))

    assert raised.value.returncode == 2
    assert str(raised.value) == (
        f"Execution {resumed.id} cannot be resumed: it is succeeded; "
        "only interrupted, failed or lost executions can."
    )
    assert Execution.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume", "nope"], "No execution with ID 'nope'."),
        (["demo.steps", "--resume", "x"], "--resume takes the command, params, "),
        ([], "Name a command, or --resume ID (--list lists them)."),
    ],
)
def test_execute_resume_usage_errors_exit_2(args, message):
    with pytest.raises(CommandError) as raised:
        call_command("execute", *args)

    assert raised.value.returncode == 2
    assert str(raised.value).startswith(message)


def demo_logs(*params: str) -> list[str]:
    return ["demo.logs", *[arg for p in params for arg in ("--param", p)]]


@pytest.mark.django_db(transaction=True)
def test_execute_shows_the_log_lines_apart_from_the_bars(capsys):
    call_command("execute", *demo_logs("lines=2", "seconds=0"))

    out = capsys.readouterr().out
    assert "prepare │ preparing 1 of 2\nprepare │ preparing 2 of 2\n" in out
    assert "prepare │ prepare writes to stderr too\n" in out
    assert "report │ all done\n" in out
    # The bars' own lines are not in the run's log.
    execution = Execution.objects.get()
    texts = [line.text for line in execution.log_lines.all()]
    assert not [text for text in texts if "succeeded" in text]


@pytest.mark.django_db(transaction=True)
def test_execute_quiet_hides_log_lines_but_not_a_traceback(capsys):
    with pytest.raises(SystemExit):
        call_command(
            "execute", *demo_logs("lines=2", "seconds=0", "fail=step"), "--quiet"
        )

    out = capsys.readouterr().out
    assert "preparing" not in out
    assert "report │ Traceback (most recent call last):\n" in out
    assert "RuntimeError: the report failed as asked (fail=step)\n" in out


def test_execute_list_shows_each_command_with_its_params(capsys):
    call_command("execute", "--list")

    out = capsys.readouterr().out
    assert "demo.steps  Demo: a chain of steps\n" in out
    assert "  count        int          5     1 to 1000    how many steps\n" in out
    assert "one of: app_download, s3_bucket, iam_policy" in out
