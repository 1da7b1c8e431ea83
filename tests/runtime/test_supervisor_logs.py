"""Step logs through a real execution process (executions/runtime/child.py,
process.py and supervisor.py): captured in the process, sent to the
supervisor, stored bounded, sent to the watchers; `ctx.run`'s child stopped
with a forced run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from executions import services
from executions.models import Execution, LogLine, Source, Status
from executions.runtime import groups
from executions.runtime.run import LOG_WRITE_LINES
from executions.runtime.supervisor import Supervisor

pytestmark = pytest.mark.django_db(transaction=True)

#: Generous: the first run also starts the forkserver.
HANG = 60


class Watcher:
    """A channel in an execution's watch group, keeping every event."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.changed = asyncio.Event()

    def logs(self) -> list[dict]:
        return [event for event in self.events if event["type"] == groups.LOG]

    def lines(self) -> list[dict]:
        return [line for event in self.logs() for line in event["lines"]]

    async def child_pid(self) -> int:
        """The pid demo.logs' child says it has, once it says so."""
        while True:
            for line in self.lines():
                found = re.fullmatch(r"child (\d+) running", line["text"])
                if found:
                    return int(found[1])
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), HANG)


@contextlib.asynccontextmanager
async def watching(execution_id) -> AsyncIterator[Watcher]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = groups.watch_group(execution_id)
    await layer.group_add(group, channel)
    watcher = Watcher()

    async def receive() -> None:
        while True:
            watcher.events.append(await layer.receive(channel))
            watcher.changed.set()

    task = asyncio.ensure_future(receive())
    try:
        yield watcher
    finally:
        task.cancel()
        await layer.group_discard(group, channel)


@database_sync_to_async
def create(**params) -> Execution:
    return services.start_execution(
        "demo.logs", params, source=Source.API, dispatch=False
    ).execution


@database_sync_to_async
def stored(execution_id) -> tuple[Execution, list[dict]]:
    lines = LogLine.objects.filter(execution_id=execution_id).order_by("seq")
    return (
        Execution.objects.get(pk=execution_id),
        [line.snapshot() for line in lines],
    )


async def supervise(execution_id) -> Execution:
    supervisor = Supervisor(reaps=False)
    try:
        return await asyncio.wait_for(supervisor.start(execution_id), HANG)
    finally:
        await supervisor.close()


def gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie no longer runs either)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


async def until_gone(pid: int, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not gone(pid):
        assert asyncio.get_running_loop().time() < deadline, f"{pid} still runs"
        await asyncio.sleep(0.01)


async def test_execution_process_logs_each_step_stored_and_sent():
    execution = await create(lines=2, seconds=0)

    async with watching(execution.id) as watcher:
        finished = await supervise(execution.id)
    row, lines = await stored(execution.id)

    assert finished.status == Status.SUCCEEDED
    child = next(line["text"] for line in lines if line["step"] == "build")
    assert [(line["step"], line["level"], line["text"]) for line in lines] == [
        ("prepare", "stdout", "preparing 1 of 2"),
        ("prepare", "stdout", "preparing 2 of 2"),
        ("prepare", "stderr", "prepare writes to stderr too"),
        ("prepare", "warning", "demo.logs: a logging record from prepare"),
        ("build", "stdout", child),
        ("build", "info", "the child finished"),
        ("report", "info", "all done"),
    ]
    assert re.fullmatch(r"child \d+ running", child)
    assert [line["seq"] for line in lines] == list(range(1, 8))
    assert watcher.lines() == lines
    assert {event["execution_id"] for event in watcher.logs()} == {str(row.id)}
    assert row.log_dropped == 0


async def test_execution_process_flood_stays_bounded(settings):
    settings.EXECUTIONS_LOG_RATE = 0.0
    settings.EXECUTIONS_LOG_BURST = 100
    settings.EXECUTIONS_LOG_LIMIT = 50
    execution = await create(lines=1_000_000, seconds=0)

    async with watching(execution.id) as watcher:
        finished = await supervise(execution.id)
    row, lines = await stored(execution.id)

    assert finished.status == Status.SUCCEEDED
    # The first 100 lines pass the source's cap; the database keeps the
    # last 50 of them; everything else is counted.
    assert [line["text"] for line in lines] == [
        f"preparing {n} of 1000000" for n in range(51, 101)
    ]
    assert [line["seq"] for line in lines] == list(range(51, 101))
    emitted = 1_000_000 + 5  # prints, stderr, warning, child, two ctx.log lines
    assert row.log_dropped == emitted - 50
    assert len(watcher.lines()) == 100
    assert all(
        len(event["lines"]) <= groups.LOG_EVENT_LINES for event in watcher.logs()
    )
    assert watcher.logs()[-1]["dropped"] == row.log_dropped


async def test_a_run_holding_enough_lines_has_them_written_before_the_next_round(
    settings,
):
    # Rounds too far apart to write anything in this test: what is stored
    # while the run goes on was written because the run held enough lines.
    settings.EXECUTIONS_DB_PROGRESS_INTERVAL = 600.0
    execution = await create(lines=LOG_WRITE_LINES + 20, seconds=60)
    supervisor = Supervisor(reaps=False)

    async with watching(execution.id) as watcher:
        task = supervisor.start(execution.id)
        await watcher.child_pid()  # the step after the printing one runs
        deadline = asyncio.get_running_loop().time() + HANG
        while True:
            row, lines = await stored(execution.id)
            if len(lines) >= LOG_WRITE_LINES:
                break
            assert asyncio.get_running_loop().time() < deadline, len(lines)
            await asyncio.sleep(0.02)
        await database_sync_to_async(services.request_interrupt)(
            execution.id, source=Source.API, force=True
        )
        await asyncio.wait_for(task, HANG)
    await supervisor.close()
    _, every = await stored(execution.id)

    assert row.status == Status.RUNNING
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert [line["seq"] for line in every] == list(range(1, len(every) + 1))
    printed = LOG_WRITE_LINES + 20
    assert [line["text"] for line in every[:printed]] == [
        f"preparing {n} of {printed}" for n in range(1, printed + 1)
    ]


async def test_failing_child_fails_the_step_with_its_stderr_tail(caplog):
    caplog.set_level(logging.ERROR, logger="executions")
    execution = await create(lines=0, seconds=0, fail="child")

    finished = await supervise(execution.id)

    assert finished.status == Status.FAILED
    build = next(step for step in finished.steps if step["id"] == "build")
    assert build["status"] == "failed"
    assert build["error"].startswith("CommandFailed: sh -c ")
    assert build["error"].endswith(
        " exited with code 3; its stderr ended with:\nthe build broke"
    )
    assert "raise CommandFailed(argv, child.returncode, stderr)" in build["traceback"]
    _, lines = await stored(execution.id)
    assert ("stderr", "the build broke") in [
        (line["level"], line["text"]) for line in lines
    ]
    assert lines[-1]["level"] == "error"
    assert lines[-1]["text"] == build["traceback"]
    [record] = [r for r in caplog.records if r.name == "executions.runtime.run"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"step build of execution {execution.id} failed:\n{build['traceback']}"
    )


async def test_force_stops_a_ctx_run_child_with_the_execution():
    execution = await create(lines=0, seconds=60)
    supervisor = Supervisor(reaps=False)

    async with watching(execution.id) as watcher:
        task = supervisor.start(execution.id)
        pid = await watcher.child_pid()
        leader = supervisor.runs[str(execution.id)].engine.process.pid
        in_group = os.getpgid(pid) == leader
        await database_sync_to_async(services.request_interrupt)(
            execution.id, source=Source.API, force=True
        )
        finished = await asyncio.wait_for(task, HANG)
    await supervisor.close()

    assert in_group
    assert finished.status == Status.INTERRUPTED
    # Its group had SIGKILL before the row was written: it runs no code
    # after that, though a busy kernel may take a moment to show it dead.
    await until_gone(pid)
