"""No interrupt is lost when the channel layer loses the push: the runner's
poll of the durable request delivers it."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from executions import services
from executions.models import Execution, Status
from tests.factories import run_here


@pytest.fixture
def lossy_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tests.faults.LossyLayer",
            "CONFIG": {"drop": ["execution.interrupt"]},
        }
    }
    settings.EXECUTIONS_POLL_INTERVAL = 0.2
    return get_channel_layer()


@database_sync_to_async
def status_of(execution_id) -> str:
    return Execution.objects.get(pk=execution_id).status


async def wait_for_status(execution_id, status: str) -> None:
    async with asyncio.timeout(10):
        while await status_of(execution_id) != status:
            await asyncio.sleep(0.01)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("force", [False, True])
async def test_interrupt_lands_when_every_push_is_lost(lossy_layer, force):
    execution = (
        await database_sync_to_async(services.start_execution)(
            "demo.steps",
            {"count": 3, "seconds": 20, "ticks": 2000, "cooperative": not force},
            source="api",
            dispatch=False,
        )
    ).execution
    run = asyncio.ensure_future(run_here(execution.id))
    await wait_for_status(execution.id, Status.RUNNING)

    await database_sync_to_async(services.request_interrupt)(
        execution.id, source="api", force=force
    )
    async with asyncio.timeout(10):  # a step lasts 20 s: only an interrupt ends it
        finished = await run

    assert lossy_layer.dropped["execution.interrupt"] == 1
    assert finished.status == Status.INTERRUPTED
    assert finished.interrupt_force is force
    assert finished.outcome["steps_not_processed"] == ["step-1", "step-2", "step-3"]
