"""Who watches which runs (executions/runtime/watchers.py), and the pace it
sets: an execution process samples its steps for watchers while it has any,
at the database's pace while it has none, and for watchers again as soon as
one joins. Redis's answer is in tests/scaleout/test_watchers.py."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from executions import services
from executions.layers import InMemoryChannelLayer
from executions.models import Source
from executions.runtime import groups, watchers
from executions.runtime import supervisor as supervising
from executions.runtime.supervisor import Supervisor

#: Generous: the first run also starts the forkserver.
HANG = 60


async def test_the_in_memory_layer_says_which_runs_have_a_watcher():
    layer = InMemoryChannelLayer()
    watched, alone = str(uuid.uuid4()), str(uuid.uuid4())
    await layer.group_add(groups.watch_group(watched), await layer.new_channel())
    await layer.group_add(groups.control_group(alone), await layer.new_channel())

    found = await watchers.watched(layer, [watched, alone])

    assert found == {watched}


async def test_without_a_layer_nobody_watches_and_another_layer_cannot_tell():
    run_id = str(uuid.uuid4())

    assert await watchers.watched(None, [run_id]) == set()
    assert await watchers.watched(object(), [run_id]) is None


async def until(condition, timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


class FakeRun:
    local = False

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.paces: list[bool] = []
        self.joined_at = float("-inf")
        self.delivered: list[bool] = []

    def watch(self, watched: bool) -> None:
        self.paces.append(watched)

    def joined(self) -> None:
        self.joined_at = time.monotonic()

    def deliver(self, force: bool) -> None:
        self.delivered.append(force)


async def test_the_supervisor_paces_each_run_by_its_watchers():
    layer = get_channel_layer()
    supervisor = Supervisor(reaps=False)
    watched, alone = FakeRun(), FakeRun()
    supervisor.runs = {watched.id: watched, alone.id: alone}
    await layer.group_add(groups.watch_group(watched.id), await layer.new_channel())

    await supervisor._pace()

    assert (watched.paces, alone.paces) == ([True], [False])


async def test_a_watcher_that_joins_while_the_layer_is_asked_counts(monkeypatch):
    supervisor = Supervisor(reaps=False)
    run = FakeRun()
    supervisor.runs = {run.id: run}

    async def nobody(layer, run_ids):
        run.joined()  # its word arrives meanwhile
        return set()

    monkeypatch.setattr(supervising.watchers, "watched", nobody)

    await supervisor._pace()

    assert run.paces == [True]


async def test_a_terminals_own_run_is_not_asked_about(monkeypatch):
    supervisor = Supervisor(reaps=False)
    run = FakeRun()
    run.local = True
    supervisor.runs = {run.id: run}
    asked = []

    async def ask(layer, run_ids):
        asked.append(run_ids)
        return set()

    monkeypatch.setattr(supervising.watchers, "watched", ask)

    await supervisor._pace()

    assert (asked, run.paces) == ([], [])


@pytest.mark.parametrize("answer", ["unknown", "failing", "silent"])
async def test_a_layer_that_cannot_tell_leaves_runs_paced_for_watchers(
    monkeypatch, answer
):
    supervisor = Supervisor(reaps=False)
    run = FakeRun()
    supervisor.runs = {run.id: run}

    async def ask(layer, run_ids):
        if answer == "failing":
            raise ConnectionError("Redis is away")
        if answer == "silent":
            await asyncio.sleep(HANG)  # it took the connection, never answers
        return None

    monkeypatch.setattr(supervising.watchers, "watched", ask)
    monkeypatch.setattr(supervising, "WATCHERS_TIMEOUT", 0.05)

    await supervisor._pace()

    assert run.paces == [True]


async def test_a_watchers_word_on_the_control_group_reaches_the_run():
    layer = get_channel_layer()
    supervisor = Supervisor(reaps=False)
    run = FakeRun()
    listening = asyncio.ensure_future(supervisor._listen_for_interrupts(run))
    try:
        group = groups.control_group(run.id)
        await until(lambda: layer.groups.get(group), timeout=5)

        await layer.group_send(group, {"type": groups.WATCHED})
        await until(lambda: run.joined_at > float("-inf"), timeout=5)
    finally:
        listening.cancel()

    assert run.delivered == []


@database_sync_to_async
def create(**params):
    return services.start_execution(
        "demo.steps", params, source=Source.API, dispatch=False
    ).execution


async def events_within(counted: list[float], seconds: float) -> int:
    before = len(counted)
    await asyncio.sleep(seconds)
    return len(counted) - before


@pytest.mark.django_db(transaction=True)
async def test_an_execution_process_nobody_watches_samples_at_the_databases_pace(
    settings,
):
    settings.EXECUTIONS_POLL_INTERVAL = 0.1
    settings.EXECUTIONS_PROGRESS_INTERVAL = 0.05
    settings.EXECUTIONS_DB_PROGRESS_INTERVAL = 0.5
    execution = await create(count=1, seconds=60, ticks=6000)  # a tick each 10 ms
    supervisor = Supervisor(reaps=False)
    task = supervisor.start(execution.id)
    try:
        await until(lambda: str(execution.id) in supervisor.runs)
        run = supervisor.runs[str(execution.id)]
        counted: list[float] = []
        on_step = run.on_step
        run.on_step = lambda step: (counted.append(time.monotonic()), on_step(step))
        await until(lambda: counted and not run.watched)
        alone = await events_within(counted, 1.5)

        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(groups.watch_group(execution.id), channel)
        await until(lambda: run.watched, timeout=5)
        watched = await events_within(counted, 1.5)
    finally:
        await database_sync_to_async(services.request_interrupt)(
            execution.id, source=Source.API, force=True
        )
        await asyncio.wait_for(task, HANG)
        await supervisor.close()

    # Every 0.5 s alone: about 3 in 1.5 s; watched, 20 a second (30 in
    # 1.5 s; a loaded machine delivers fewer, never as few as alone).
    assert alone <= 5
    assert watched >= 10
