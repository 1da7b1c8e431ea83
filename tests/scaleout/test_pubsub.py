"""The project's Redis pub/sub layer (executions/pubsub.py) on a real
redis-server: its reader reads as soon as it has a subscription, where
channels_redis's own sleeps 0.1 s at a time, and waits without polling when
it has none."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from executions.pubsub import RedisPubSubChannelLayer

pytestmark = pytest.mark.e2e

#: How long the test waits for Redis before it gives up.
GIVE_UP_AFTER = 5.0


def awaiting(task: asyncio.Task) -> list[str]:
    """What a suspended task is awaiting, outermost first: the names of the
    coroutines down its chain of awaits."""
    names = []
    awaited = task.get_coro()
    while awaited is not None:
        names.append(getattr(awaited, "__qualname__", type(awaited).__name__))
        awaited = getattr(awaited, "cr_await", None)
    return names


#: Loop turns a reader woken by its subscription takes to read: a few.
TURNS = 20


async def reader_in(layer, name: str, *, turns: int = TURNS) -> list[str]:
    """Let the loop turn until the layer's reader awaits `name`, at most
    `turns` times: far too few for a 0.1 s sleep to end."""
    shard = layer._get_layer()._shards[0]
    for _ in range(turns):
        chain = awaiting(shard._receive_task)
        if name in chain:
            break
        await asyncio.sleep(0)
    return chain


async def reader_waits(layer) -> list[str]:
    """Let Redis answer until the layer's reader waits for a subscription;
    give up after GIVE_UP_AFTER."""
    deadline = time.monotonic() + GIVE_UP_AFTER
    while True:
        chain = await reader_in(layer, "Event.wait", turns=1)
        if "Event.wait" in chain or time.monotonic() > deadline:
            return chain
        await asyncio.sleep(0.001)


async def leave(layer, group: str, channel: str) -> None:
    """What a consumer does as it goes: it leaves its group, and its
    cancelled receive unsubscribes its channel."""
    await layer.group_discard(group, channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    receiving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receiving


async def test_the_reader_reads_once_the_first_subscription_is_sent(redis_server):
    """A fresh loop's first subscription: its reader started before the
    SUBSCRIBE went out (as channels_redis's does); it waited for it, and
    reads now, not asleep for 0.1 s. What is sent at once arrives."""
    layer = RedisPubSubChannelLayer(hosts=[redis_server.url])
    sender = RedisPubSubChannelLayer(hosts=[redis_server.url])
    channel = await layer.new_channel()
    await layer.group_add("execution-control.x", channel)

    chain = await reader_in(layer, "PubSub.get_message")
    assert "PubSub.get_message" in chain, chain
    assert "sleep" not in chain

    await sender.group_send("execution-control.x", {"type": "execution.interrupt"})
    received = await asyncio.wait_for(layer.receive(channel), GIVE_UP_AFTER)
    assert received == {"type": "execution.interrupt"}
    await layer.flush()
    await sender.flush()


async def test_with_nothing_subscribed_the_reader_waits_and_wakes_for_the_next(
    redis_server,
):
    """The last watcher leaves: once Redis has confirmed the unsubscribes,
    the reader waits for a subscription without polling; the next one wakes
    it, and what is sent to it arrives."""
    layer = RedisPubSubChannelLayer(hosts=[redis_server.url])
    sender = RedisPubSubChannelLayer(hosts=[redis_server.url])
    first = await layer.new_channel()
    await layer.group_add("execution-control.a", first)
    await leave(layer, "execution-control.a", first)

    chain = await reader_waits(layer)
    assert "Event.wait" in chain, chain
    assert "sleep" not in chain

    second = await layer.new_channel()
    await layer.group_add("execution-control.b", second)
    chain = await reader_in(layer, "PubSub.get_message")
    assert "PubSub.get_message" in chain, chain

    await sender.group_send("execution-control.b", {"type": "execution.status"})
    received = await asyncio.wait_for(layer.receive(second), GIVE_UP_AFTER)
    assert received == {"type": "execution.status"}
    await layer.flush()
    await sender.flush()
