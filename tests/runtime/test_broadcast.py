"""Pushes from sync code: one long-lived loop per process, not one per push."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.layers import BaseChannelLayer, channel_layers

from executions.runtime import broadcast

seen_loops: list[int] = []


class RecordingLayer(BaseChannelLayer):
    """A layer shared between processes, as Redis is: it remembers the loop
    each send ran on (a Redis layer keeps a connection per loop)."""

    extensions = ["groups"]

    async def group_send(self, group: str, message: dict) -> None:
        seen_loops.append(id(asyncio.get_running_loop()))


@pytest.fixture
def recording_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "tests.runtime.test_broadcast.RecordingLayer"}
    }
    channel_layers.backends.clear()
    seen_loops.clear()
    yield
    channel_layers.backends.clear()


def push_from_a_plain_thread() -> None:
    thread = threading.Thread(
        target=broadcast.from_sync,
        args=("group_send", "execution.x", {"type": "execution.status"}),
    )
    thread.start()
    thread.join()


def test_sync_pushes_share_one_loop_and_its_connection(recording_layer):
    for _ in range(3):
        push_from_a_plain_thread()
    broadcast.from_sync("group_send", "execution.x", {"type": "execution.status"})

    assert len(seen_loops) == 4
    assert len(set(seen_loops)) == 1


async def test_a_push_from_a_sync_view_runs_on_the_servers_loop(recording_layer):
    await sync_to_async(broadcast.from_sync)(
        "group_send", "execution.x", {"type": "execution.status"}
    )

    server_loop = id(asyncio.get_running_loop())
    assert seen_loops == [server_loop]


@pytest.fixture
def memory_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "executions.layers.InMemoryChannelLayer"}
    }
    channel_layers.backends.clear()
    yield channel_layers["default"]
    channel_layers.backends.clear()


async def test_a_sync_views_push_on_the_apps_layer_is_queued_when_it_returns(
    memory_layer,
):
    channel = await memory_layer.new_channel()
    await memory_layer.group_add("execution-control.x", channel)

    def view() -> int:
        broadcast.from_sync("group_send", "execution-control.x", {"type": "a"})
        return memory_layer.channels[channel].qsize()

    assert await sync_to_async(view)() == 1


async def test_a_sync_views_pushes_that_do_not_wait_arrive_in_order_before_its_answer(
    memory_layer,
):
    channel = await memory_layer.new_channel()
    await memory_layer.group_add("execution.x", channel)

    def view() -> None:
        for n in range(3):
            broadcast.from_sync(
                "group_send", "execution.x", {"type": "s", "n": n}, wait=False
            )

    await sync_to_async(view)()

    queue = memory_layer.channels[channel]
    assert [queue.get_nowait()[1]["n"] for _ in range(queue.qsize())] == [0, 1, 2]


def test_a_push_to_a_closed_servers_loop_is_dropped(memory_layer):
    loop = asyncio.new_event_loop()
    loop.close()
    SyncToAsync.threadlocal.main_event_loop = loop
    try:
        broadcast.from_sync("group_send", "execution.x", {"type": "s"})
    finally:
        del SyncToAsync.threadlocal.main_event_loop
