"""An execution's control group, as its supervisor and its execution process
hear it (executions/runtime/control.py). Over a real Redis, with an
execution process in the group: tests/scaleout/test_workers.py."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels import layers as channels_layers
from channels_redis.pubsub import RedisPubSubChannelLayer

from executions.layers import InMemoryChannelLayer
from executions.runtime import control, groups
from tests.runtime.test_watchers import until


class FlakyLayer(channels_layers.InMemoryChannelLayer):
    """A layer whose channels are read, as Redis's are, that fails the first
    `failures` joins and receives, as a Redis that is away."""

    def __init__(self, *, joins: int = 0, receives: int = 0) -> None:
        super().__init__()
        self.failing = {"join": joins, "receive": receives}
        self.joins = 0

    def _fail(self, what: str) -> None:
        if self.failing[what]:
            self.failing[what] -= 1
            raise ConnectionError("Redis is away")

    async def group_add(self, group: str, channel: str) -> None:
        self._fail("join")
        self.joins += 1
        await super().group_add(group, channel)

    async def receive(self, channel: str) -> dict:
        self._fail("receive")
        return await super().receive(channel)


@pytest.fixture
def group() -> str:
    return groups.control_group(uuid.uuid4())


async def hearing(layer, group: str, heard: list, **options) -> asyncio.Task:
    task = asyncio.ensure_future(control.listen(layer, group, heard.append, **options))
    await until(lambda: layer.groups.get(group), timeout=5)
    return task


@pytest.mark.parametrize(
    "make", [InMemoryChannelLayer, FlakyLayer], ids=["heard", "read"]
)
async def test_each_message_to_the_group_is_handed_on_in_order(group, make):
    layer, heard = make(), []
    listening = await hearing(layer, group, heard)
    try:
        await layer.group_send(group, {"type": groups.INTERRUPT, "force": False})
        await layer.group_send(group, {"type": groups.WATCHED})
        await until(lambda: len(heard) == 2, timeout=5)
    finally:
        listening.cancel()

    assert heard == [
        {"type": groups.INTERRUPT, "force": False},
        {"type": groups.WATCHED},
    ]


async def test_on_the_apps_layer_a_message_is_handed_on_in_the_send(group):
    layer, heard = InMemoryChannelLayer(), []
    listening = await hearing(layer, group, heard)
    try:
        await layer.group_send(group, {"type": groups.INTERRUPT, "force": False})

        # No reader task had to run: the supervisor relays inside the push.
        assert heard == [{"type": groups.INTERRUPT, "force": False}]
        assert layer.channels == {}
    finally:
        listening.cancel()


async def test_cancelled_it_leaves_the_group(group):
    layer = InMemoryChannelLayer()
    listening = await hearing(layer, group, [])

    listening.cancel()
    await asyncio.wait([listening])

    assert not layer.groups.get(group)
    assert layer._heard == {}


async def test_an_execution_process_on_its_way_out_does_not_wait_to_leave(group):
    layer = InMemoryChannelLayer()
    listening = await hearing(layer, group, [], leave=False)

    listening.cancel()
    await asyncio.wait([listening])

    assert layer.groups.get(group)  # its connection goes with the process


async def test_the_group_is_joined_again_each_interval(group, settings):
    settings.EXECUTIONS_REJOIN_INTERVAL = 0.05
    layer = FlakyLayer()
    listening = await hearing(layer, group, [])
    try:
        await until(lambda: layer.joins >= 3, timeout=5)
    finally:
        listening.cancel()


async def test_a_layer_that_fails_is_retried_and_heard_once_back(group, caplog):
    layer, heard = FlakyLayer(joins=1, receives=1), []
    listening = asyncio.ensure_future(control.listen(layer, group, heard.append))
    try:
        await until(lambda: layer.groups.get(group), timeout=5)
        await layer.group_send(group, {"type": groups.INTERRUPT, "force": True})
        await until(lambda: heard, timeout=5)
    finally:
        listening.cancel()

    assert heard == [{"type": groups.INTERRUPT, "force": True}]
    assert "joining control groups failing; retrying" in caplog.text
    assert "control channels failing" in caplog.text


def test_only_a_layer_that_reaches_other_processes_is_joined_from_one():
    assert control.spans_processes(RedisPubSubChannelLayer(hosts=["redis://x"]))
    assert not control.spans_processes(InMemoryChannelLayer())
    assert not control.spans_processes(None)
