"""`ctx.run` (executions/engine/processes.py): a subprocess's output in the
step's log, a failed one failing the step, and the interrupt policies."""

from __future__ import annotations

import asyncio
import os
import signal as signals
import sys
import time

import pytest

from executions.engine import InterruptSignal, Scheduler, Step, StepStatus

from .steps import HANG, Events, run
from .test_logs import Logs

TALK = [
    sys.executable,
    "-c",
    "import sys; print('out 1'); print('err 1', file=sys.stderr); print('out 2')",
]


def waiting_for(flag) -> list[str]:
    """A child that says `ready` and its pid, then waits for `flag` to exist."""
    return [
        "sh",
        "-c",
        f'echo "ready $$"; while [ ! -e "{flag}" ]; do sleep 0.01; done; echo done',
    ]


class Ready:
    """An `on_log` listener that also tells when a child said `ready <pid>`."""

    def __init__(self) -> None:
        self.logs = Logs()
        self.event = asyncio.Event()
        self.pid: int | None = None

    def __call__(self, lines, dropped) -> None:
        self.logs(lines, dropped)
        for line in lines:
            if line["text"].startswith("ready "):
                self.pid = int(line["text"].split()[1])
                self.event.set()

    async def wait(self) -> int:
        await asyncio.wait_for(self.event.wait(), HANG)
        return self.pid


async def gone(pid: int) -> bool:
    """Whether `pid` has ended (and was reaped), waiting at most HANG."""
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_ctx_run_logs_a_sync_steps_child_output():
    logs = Logs()
    results = {}

    def step(ctx):
        results["done"] = ctx.run(TALK)

    await run([Step("a", step)], on_log=logs)

    assert sorted(logs.of("a")) == [
        ("stderr", "err 1"),
        ("stdout", "out 1"),
        ("stdout", "out 2"),
    ]
    assert results["done"].returncode == 0
    assert results["done"].stdout == "out 1\nout 2"


async def test_ctx_run_is_awaited_in_an_async_step():
    logs = Logs()

    async def step(ctx):
        completed = await ctx.run(TALK, check=False)
        ctx.log.info("exit %d", completed.returncode)

    await run([Step("a", step)], on_log=logs)

    assert ("stdout", "out 2") in logs.of("a")
    assert logs.of("a")[-1] == ("info", "exit 0")


@pytest.mark.parametrize("is_async", [False, True])
async def test_ctx_run_nonzero_exit_fails_the_step_with_the_stderr_tail(is_async):
    events = Events()
    argv = ["sh", "-c", "echo working; echo first >&2; echo 'it broke' >&2; exit 3"]

    def sync_step(ctx):
        ctx.run(argv)

    async def async_step(ctx):
        await ctx.run(argv)

    await run(
        [Step("a", async_step if is_async else sync_step)],
        on_step=events,
        on_log=Logs(),
    )

    state = events.final("a")
    assert state.status is StepStatus.FAILED
    assert state.error == (
        "CommandFailed: sh -c 'echo working; echo first >&2; echo '\"'\"'it broke'"
        "\"'\"' >&2; exit 3' exited with code 3; its stderr ended with:\n"
        "first\nit broke"
    )


async def test_ctx_run_check_false_returns_the_exit_code():
    results = {}

    def step(ctx):
        results["code"] = ctx.run(["sh", "-c", "exit 4"], check=False).returncode

    await run([Step("a", step)], on_log=Logs())

    assert results["code"] == 4


async def test_ctx_run_refuses_an_unknown_policy():
    events = Events()

    def step(ctx):
        ctx.run(["true"], on_interrupt="kill")

    await run([Step("a", step)], on_step=events)

    assert events.final("a").error == (
        "ValueError: on_interrupt must be 'wait' or 'sigint', not 'kill'"
    )


async def test_ctx_run_waits_for_the_child_on_a_graceful_interrupt(tmp_path):
    ready = Ready()
    events = Events()
    signal = InterruptSignal()
    flag = tmp_path / "flag"

    def step(ctx):
        ctx.run(waiting_for(flag), on_interrupt="wait")

    task = asyncio.ensure_future(
        Scheduler([Step("a", step)], signal=signal, on_log=ready, on_step=events).run()
    )
    await ready.wait()
    signal.request()
    await asyncio.sleep(0.2)  # long enough for a wrong policy to act
    flag.touch()
    await asyncio.wait_for(task, HANG)

    assert events.final("a").status is StepStatus.SUCCEEDED
    assert ready.logs.of("a")[-1] == ("stdout", "done")


@pytest.fixture
def sigint_at_default():
    """SIGINT at Python's default in this process for the test. Steps run
    in an execution process, which hears SIGINT (runtime/child.py), so their
    children start with it at the default; the suite, launched in the
    background of a non-interactive shell (`cmd &`), inherits it ignored,
    and the child here would then ignore the policy's SIGINT."""
    previous = signals.signal(signals.SIGINT, signals.default_int_handler)
    yield
    signals.signal(signals.SIGINT, previous)


@pytest.mark.usefixtures("sigint_at_default")
async def test_ctx_run_sends_sigint_on_a_graceful_interrupt_by_policy(tmp_path):
    ready = Ready()
    events = Events()
    signal = InterruptSignal()

    async def step(ctx):
        await ctx.run(waiting_for(tmp_path / "never"), on_interrupt="sigint")

    task = asyncio.ensure_future(
        Scheduler([Step("a", step)], signal=signal, on_log=ready, on_step=events).run()
    )
    pid = await ready.wait()
    signal.request()
    await asyncio.wait_for(task, HANG)

    assert events.final("a").status is StepStatus.INTERRUPTED
    assert await gone(pid)


@pytest.mark.parametrize("is_async", [False, True])
async def test_ctx_run_force_kills_the_child(tmp_path, is_async):
    ready = Ready()
    signal = InterruptSignal()
    argv = waiting_for(tmp_path / "never")

    def sync_step(ctx):
        ctx.run(argv)

    async def async_step(ctx):
        await ctx.run(argv)

    task = asyncio.ensure_future(
        Scheduler(
            [Step("a", async_step if is_async else sync_step)],
            signal=signal,
            on_log=ready,
        ).run()
    )
    pid = await ready.wait()
    signal.request(force=True)
    outcome = await asyncio.wait_for(task, HANG)

    assert outcome.steps_not_processed == ("a",)
    assert await gone(pid)
