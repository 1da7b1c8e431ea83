"""The project's Redis pub/sub layer (executions/pubsub.py) on a real
redis-server: its reader reads as soon as it has a subscription, where
channels_redis's own sleeps 0.1 s at a time, and waits without polling when
it has none."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
import redis

from executions.pubsub import RedisPubSubChannelLayer
from executions.runtime import control, groups
from tests.runtime.test_watchers import until

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


@pytest.fixture
async def layer(redis_server):
    """The project's pub/sub layer on the test's Redis; flushed after."""
    layer = RedisPubSubChannelLayer(hosts=[redis_server.url])
    yield layer
    await layer.flush()


@pytest.fixture
async def sender(redis_server):
    """A second layer, as another process's, to send from."""
    sender = RedisPubSubChannelLayer(hosts=[redis_server.url])
    yield sender
    await sender.flush()


async def heard_in(layer, group: str) -> tuple[str, list[dict]]:
    """A new channel in `group`, heard: the channel and what it hears."""
    channel = await layer.new_channel()
    heard = []
    layer.hear(channel, heard.append)
    await layer.group_add(group, channel)
    return channel, heard


async def leave(layer, group: str, channel: str) -> None:
    """What a consumer does as it goes: it leaves its group, and its
    cancelled receive unsubscribes its channel."""
    await layer.group_discard(group, channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    receiving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receiving


async def test_the_reader_reads_once_the_first_subscription_is_sent(layer, sender):
    """A fresh loop's first subscription: its reader started before the
    SUBSCRIBE went out (as channels_redis's does); it waited for it, and
    reads now, not asleep for 0.1 s. What is sent at once arrives."""
    channel = await layer.new_channel()
    await layer.group_add("execution-control.x", channel)

    chain = await reader_in(layer, "PubSub.get_message")
    assert "PubSub.get_message" in chain, chain
    assert "sleep" not in chain

    await sender.group_send("execution-control.x", {"type": "execution.interrupt"})
    received = await asyncio.wait_for(layer.receive(channel), GIVE_UP_AFTER)
    assert received == {"type": "execution.interrupt"}


async def test_with_nothing_subscribed_the_reader_waits_and_wakes_for_the_next(
    layer, sender
):
    """The last watcher leaves: once Redis has confirmed the unsubscribes,
    the reader waits for a subscription without polling; the next one wakes
    it, and what is sent to it arrives."""
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


async def test_a_heard_channel_gets_each_message_in_the_readers_call(layer, sender):
    """What reaches a heard channel's group is handed to its callback by the
    reader task itself, in order, with nothing queued for a `receive`."""
    channel = await layer.new_channel()
    heard, tasks = [], []

    def on_message(message: dict) -> None:
        heard.append(message)
        tasks.append(asyncio.current_task())

    layer.hear(channel, on_message)
    await layer.group_add("execution-control.h", channel)
    await reader_in(layer, "PubSub.get_message")
    await sender.group_send("execution-control.h", {"type": "execution.interrupt"})
    await sender.group_send("execution-control.h", {"type": "execution.status"})
    await until(lambda: len(heard) >= 2, timeout=GIVE_UP_AFTER)

    assert heard == [{"type": "execution.interrupt"}, {"type": "execution.status"}]
    reader = layer._get_layer()._shards[0]._receive_task
    assert tasks == [reader, reader]
    assert layer._get_layer().channels[channel].empty()


async def test_a_failing_listener_is_logged_and_the_group_still_hears(
    layer, sender, caplog
):
    """One heard channel's callback raises: that is logged, and the group's
    other members still get the message, heard or queued as each is."""
    failing, hearing, reading = [await layer.new_channel() for _ in range(3)]
    heard = []

    def fail(message: dict) -> None:
        raise RuntimeError("a broken listener")

    layer.hear(failing, fail)
    layer.hear(hearing, heard.append)
    for channel in (failing, hearing, reading):
        await layer.group_add("execution-control.f", channel)
    await reader_in(layer, "PubSub.get_message")
    await sender.group_send("execution-control.f", {"type": "execution.interrupt"})

    read = await asyncio.wait_for(layer.receive(reading), GIVE_UP_AFTER)
    assert read == {"type": "execution.interrupt"}
    assert heard == [{"type": "execution.interrupt"}]
    assert f"the listener of {failing} failed" in caplog.text


async def test_a_message_that_cannot_be_read_is_logged_and_the_next_heard(
    layer, sender, redis_server, caplog
):
    """Something not of ours published to a heard channel's group: that is
    logged, and the reader goes on to hand over the next message."""
    channel, heard = await heard_in(layer, "execution-control.g")
    await reader_in(layer, "PubSub.get_message")
    name = layer._get_layer()._get_group_channel_name("execution-control.g")
    redis.Redis.from_url(redis_server.url).publish(name, b"x" * 12 + b"\xc1")
    await sender.group_send("execution-control.g", {"type": "execution.status"})
    await until(lambda: heard, timeout=GIVE_UP_AFTER)

    assert heard == [{"type": "execution.status"}]
    assert f"a message to {channel} could not be read" in caplog.text


async def test_unheard_a_channel_is_read_again(layer, sender):
    channel, heard = await heard_in(layer, "execution-control.u")
    layer.unhear(channel)

    await reader_in(layer, "PubSub.get_message")
    await sender.group_send("execution-control.u", {"type": "execution.status"})
    received = await asyncio.wait_for(layer.receive(channel), GIVE_UP_AFTER)

    assert received == {"type": "execution.status"}
    assert heard == []


async def test_a_closed_channel_is_unsubscribed_in_redis(layer):
    """A heard channel is never `receive`d, so nothing cancelled unsubscribes
    it: `close_channel` does, and the reader, with no subscription left,
    waits for the next without polling."""
    channel = await layer.new_channel()
    layer.hear(channel, lambda message: None)
    await layer.group_add("execution-control.c", channel)
    await layer.group_discard("execution-control.c", channel)

    await layer.close_channel(channel)

    assert channel not in layer._get_layer().channels
    assert layer._get_layer().heard == {}
    chain = await reader_waits(layer)
    assert "Event.wait" in chain, chain


async def test_the_runtimes_listener_hears_its_channel_and_closes_it(layer, sender):
    """Over a real Redis, on the project's pub/sub layer: the listener's
    channel is heard (nothing is queued for it), and cancelled it leaves the
    group and unsubscribes the channel."""
    group = groups.control_group(uuid.uuid4())
    heard = []
    listening = asyncio.ensure_future(control.listen(layer, group, heard.append))
    try:
        await until(lambda: layer._get_layer().heard, timeout=5)
        (channel,) = layer._get_layer().heard
        name = layer._get_layer()._get_group_channel_name(group)
        shard = layer._get_layer()._get_shard(name)
        await until(lambda: name in shard._subscribed_to, timeout=5)
        await sender.group_send(group, {"type": groups.INTERRUPT, "force": False})
        await until(lambda: heard, timeout=5)
        assert layer._get_layer().channels[channel].empty()
    finally:
        listening.cancel()
        await asyncio.wait([listening])

    assert heard == [{"type": groups.INTERRUPT, "force": False}]
    assert layer._get_layer().heard == {}
    assert channel not in layer._get_layer().channels
    assert not layer._get_layer().groups.get(name)
    assert channel not in shard._subscribed_to
