"""The relay (executions/runtime/relay.py): a run supervised elsewhere (a
terminal) that shares only the database still reaches the server's
watchers, its log lines included."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from executions.models import LogLine, Status
from executions.runtime import groups
from executions.runtime.relay import relay
from tests import factories

from .test_supervisor_logs import HANG, watching

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def log(execution, *seqs: int) -> None:
    LogLine.objects.bulk_create(
        LogLine(
            execution=execution,
            seq=seq,
            step="step-1",
            at=timezone.now(),
            level="stdout",
            text=f"line {seq}",
        )
        for seq in seqs
    )


async def test_relay_sends_a_foreign_runs_new_log_lines(settings):
    settings.EXECUTIONS_RELAY_INTERVAL = 0.01
    execution = await database_sync_to_async(factories.execution)(Status.RUNNING)
    await log(execution, 1, 2)  # before the relay first sees it: not relayed

    async with watching(execution.id) as watcher:
        relaying = asyncio.ensure_future(relay("the-server"))
        try:
            while not watcher.events:  # the relay has seen the row
                watcher.changed.clear()
                await asyncio.wait_for(watcher.changed.wait(), HANG)
            await log(execution, 3, 4)
            while not watcher.logs():
                watcher.changed.clear()
                await asyncio.wait_for(watcher.changed.wait(), HANG)
        finally:
            relaying.cancel()

    [event] = watcher.logs()
    assert event["type"] == groups.LOG
    assert event["execution_id"] == str(execution.id)
    assert [line["text"] for line in event["lines"]] == ["line 3", "line 4"]
    assert event["dropped"] == 0
