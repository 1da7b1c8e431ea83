"""The runtime's database work runs in a thread of its own: a door's
request does not queue behind a run's writes, nor a run's behind the doors."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from channels.db import database_sync_to_async

from executions import services
from executions.models import Execution, LogLine, Status
from executions.runtime import store
from tests.factories import execution

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_runtimes_reads_and_writes_run_in_its_own_thread():
    row = await database_sync_to_async(execution)(Status.RUNNING)
    where = {}

    def runtime_thread() -> str:
        return threading.current_thread().name

    loaded = await store.load(row.pk)
    where["runtime"] = await store.runtime_database(runtime_thread)()
    where["django"] = await database_sync_to_async(runtime_thread)()

    assert loaded.pk == row.pk
    assert where["runtime"].startswith("executions-runtime-db")
    assert where["django"] != where["runtime"]


async def test_a_door_does_not_wait_for_the_runtimes_database_work():
    row = await database_sync_to_async(execution)(Status.RUNNING)
    release = threading.Event()
    busy = asyncio.ensure_future(store.runtime_database(release.wait)())
    try:
        shown = await asyncio.wait_for(
            database_sync_to_async(services.get_execution)(row.pk), timeout=5
        )
        assert shown.pk == row.pk
        assert not busy.done()  # the runtime's thread is still held
    finally:
        release.set()
        await busy


async def test_progress_of_many_runs_is_one_statement_for_the_running_rows(
    monkeypatch,
):
    running = [
        await database_sync_to_async(execution)(Status.RUNNING) for _ in range(5)
    ]
    done = await database_sync_to_async(execution)(Status.SUCCEEDED)
    monkeypatch.setattr(store, "PROGRESS_ROWS", 3)  # two statements for six
    steps = {
        str(row.pk): [{"id": "a", "status": "running", "n": number}]
        for number, row in enumerate([*running, done])
    }

    await store.save_progress(steps)

    @database_sync_to_async
    def stored() -> dict[str, list]:
        return {
            str(pk): value for pk, value in Execution.objects.values_list("pk", "steps")
        }

    now = await stored()
    for row in running:
        assert now[str(row.pk)] == steps[str(row.pk)]
    assert now[str(done.pk)] == done.steps  # finished: left as it ended


async def test_acknowledge_records_the_delivery_once_and_returns_the_snapshot():
    row = await database_sync_to_async(execution)(Status.RUNNING)
    await database_sync_to_async(row.record_interrupt)(source="api")

    first = await store.acknowledge(row.pk)
    second = await store.acknowledge(row.pk)

    now = await database_sync_to_async(Execution.objects.get)(pk=row.pk)
    assert now.interrupt_delivered_at is not None
    assert first == await database_sync_to_async(now.snapshot)()
    assert second is None


async def test_log_lines_are_stored_as_they_were_sent_and_pruned_to_the_limit():
    row = await database_sync_to_async(execution)(Status.RUNNING)
    gone = (await database_sync_to_async(execution)(Status.RUNNING)).pk
    lines = [
        {
            "seq": 1,
            "step": "copy",
            "at": "2026-12-03T23:40:01.250Z",
            "level": "info",
            "text": "pruned",
        },
        {
            "seq": 2,
            "step": None,
            "at": "2026-12-03T23:40:02.500Z",
            "level": "warning",
            "text": "run level",
        },
        {
            "seq": 3,
            "step": "copy",
            "at": "2026-12-03T23:40:03.000Z",
            "level": "stdout",
            "text": "a\x00b \udcff",
        },
    ]
    await database_sync_to_async(Execution.objects.filter(pk=gone).delete)()

    totals = await store.save_logs(
        {str(row.pk): (lines, 4), str(gone): (lines, 1)}, limit=2
    )

    stored = await database_sync_to_async(
        lambda: [line.snapshot() for line in row.log_lines.all()]
    )()
    assert stored == [
        {
            "seq": 2,
            "step": None,
            "at": "2026-12-03T23:40:02.500Z",
            "level": "warning",
            "text": "run level",
        },
        {
            "seq": 3,
            "step": "copy",
            "at": "2026-12-03T23:40:03.000Z",
            "level": "stdout",
            "text": "a\ufffdb ?",
        },
    ]
    # Dropped at the source (4) and pruned beyond the limit (1); the deleted
    # run's lines went nowhere.
    assert totals == {str(row.pk): 5}
    assert not await database_sync_to_async(
        LogLine.objects.filter(execution_id=gone).exists
    )()


def test_a_forked_child_gets_a_runtime_thread_of_its_own():
    """A prefork pool forks its children after the parent may have used the
    runtime's thread: work handed to it in a child must still run."""
    assert store._thread.submit(lambda: 1).result(timeout=5) == 1  # started
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, then leave at once
        try:
            answer = store._thread.submit(lambda: b"ran").result(timeout=5)
        except BaseException:
            answer = b"hung"
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 16)
    finally:
        os.close(read)
        os.waitpid(pid, 0)

    assert answer == b"ran"
