"""A watcher converges to the database even when the channel layer loses
every event: the page's periodic `resync` brings the true final state.

The layer (tests/faults.py) drops every step, status and finished event, as
a full in-memory channel or an expired Redis group would."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from executions import services
from executions.models import Execution, Source, Status
from executions.runtime import groups
from tests.factories import execution, run_here
from tests.sockets import TIMEOUT, receive, socket

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = [groups.PROGRESS, groups.STATUS, groups.FINISHED]
QUICK = {"count": 3, "seconds": 0.03, "ticks": 3}


@pytest.fixture
def lossy_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tests.faults.LossyLayer",
            "CONFIG": {"drop": [*EVENTS, groups.LOG, groups.LIST_CHANGED]},
        }
    }
    settings.EXECUTIONS_POLL_INTERVAL = 0.05
    return get_channel_layer()


@pytest.fixture
def user(make_user):
    return make_user("view")


@database_sync_to_async
def db_snapshot(execution_id) -> dict:
    return Execution.objects.get(pk=execution_id).snapshot()


async def run(execution_id, *, interrupt: bool) -> None:
    """Run it to the end; with `interrupt`, stop it once it has started."""
    task = asyncio.ensure_future(run_here(execution_id))
    if interrupt:
        async with asyncio.timeout(TIMEOUT):
            while (await db_snapshot(execution_id))["status"] == Status.QUEUED:
                await asyncio.sleep(0.01)
        await database_sync_to_async(services.request_interrupt)(
            execution_id, source=Source.API, reason="resync test"
        )
    await asyncio.wait_for(task, TIMEOUT)


CASES = {
    "succeeded": (QUICK, False),
    "failed": ({**QUICK, "fail_at": 2}, False),
    "interrupted": ({**QUICK, "seconds": 5, "ticks": 500}, True),
}


@pytest.mark.parametrize("case", CASES)
async def test_execution_watcher_hears_nothing_then_resync_gives_the_end(
    lossy_layer, user, case
):
    params, interrupt = CASES[case]
    watched = await database_sync_to_async(execution)(params=params)

    async with socket(f"/ws/executions/{watched.pk}/", user) as (communicator, _):
        first = await receive(communicator)
        await run(watched.pk, interrupt=interrupt)
        heard_nothing = await communicator.receive_nothing(timeout=0.2)
        await communicator.send_json_to({"type": "resync"})
        resynced = await receive(communicator)

    final = await db_snapshot(watched.pk)
    assert first["execution"]["status"] == Status.QUEUED
    assert heard_nothing
    assert resynced == {"type": "snapshot", "execution": final}
    assert final["status"] == case
    assert all(lossy_layer.dropped[event] for event in EVENTS)


async def test_list_watcher_hears_nothing_then_resync_gives_the_end(lossy_layer, user):
    watched = await database_sync_to_async(execution)(params=QUICK)

    async with socket("/ws/executions/", user) as (communicator, _):
        first = await receive(communicator)
        await run(watched.pk, interrupt=False)
        heard_nothing = await communicator.receive_nothing(timeout=0.2)
        await communicator.send_json_to({"type": "resync"})
        resynced = await receive(communicator)

    final = await db_snapshot(watched.pk)
    assert first["executions"][0]["status"] == Status.QUEUED
    assert heard_nothing
    assert resynced == {"type": "snapshot", "executions": [final]}
    assert final["status"] == Status.SUCCEEDED
    assert lossy_layer.dropped[groups.LIST_CHANGED] >= 2
