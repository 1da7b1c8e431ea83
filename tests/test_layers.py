"""The in-memory layer: Channels' semantics, without its per-send scans."""

from __future__ import annotations

import asyncio

import pytest
from channels import layers as channels_layers

from executions import layers


@pytest.fixture
def layer() -> layers.InMemoryChannelLayer:
    return layers.InMemoryChannelLayer(capacity=2)


async def test_group_send_reaches_every_member_once(layer):
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("watchers", first)
    await layer.group_add("watchers", second)

    await layer.group_send("watchers", {"type": "step", "n": 1})

    assert await layer.receive(first) == {"type": "step", "n": 1}
    assert await layer.receive(second) == {"type": "step", "n": 1}
    assert all(queue.empty() for queue in layer.channels.values())


async def test_group_send_copies_the_message_it_was_given(layer):
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)
    message = {"type": "step", "steps": [1]}

    await layer.group_send("watchers", message)
    message["steps"].append(2)

    assert await layer.receive(channel) == {"type": "step", "steps": [1]}


async def test_group_send_drops_for_a_full_channel_as_channels_does(layer):
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)

    for n in range(3):
        await layer.group_send("watchers", {"type": "step", "n": n})

    assert [(await layer.receive(channel))["n"] for _ in range(2)] == [0, 1]


async def test_group_send_to_an_empty_group_is_nothing(layer):
    await layer.group_send("nobody", {"type": "step"})

    assert layer.channels == {}


async def test_expired_entries_are_swept_at_most_once_a_second(layer, monkeypatch):
    sweeps = []
    monkeypatch.setattr(
        channels_layers.InMemoryChannelLayer,
        "_clean_expired",
        lambda self: sweeps.append(1),
    )
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)

    for _ in range(50):
        await layer.group_send("watchers", {"type": "step"})
        await layer.receive(channel)

    assert len(sweeps) == 1


def sweep_due(layer) -> None:
    layer._cleaned_at = 0.0


async def test_a_channel_keeps_its_queue_while_it_is_read(layer):
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)
    queues = []

    for n in range(3):
        await layer.group_send("watchers", {"type": "step", "n": n})
        assert (await layer.receive(channel))["n"] == n
        queues.append(layer.channels[channel])

    assert queues[0] is queues[1] is queues[2]


async def test_an_empty_queue_nobody_reads_goes_at_the_next_sweep(layer):
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)
    await layer.group_send("watchers", {"type": "step"})
    await layer.receive(channel)

    sweep_due(layer)
    await layer.group_send("nobody", {"type": "step"})

    assert layer.channels == {}


async def test_a_sweep_leaves_the_queue_a_reader_waits_on(layer):
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)
    reader = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)  # waiting on its queue

    sweep_due(layer)
    await layer.group_send("watchers", {"type": "step", "n": 1})

    assert (await asyncio.wait_for(reader, 5))["n"] == 1


async def test_a_cancelled_read_leaves_its_queue_to_the_sweep(layer):
    channel = await layer.new_channel()
    reader = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    sweep_due(layer)
    await layer.group_send("nobody", {"type": "step"})

    assert layer.channels == {}
    assert layer._reading == {}
    assert layer._read_on == {}


async def test_two_readers_of_one_channel_each_count(layer):
    channel = await layer.new_channel()
    await layer.group_add("watchers", channel)
    readers = [asyncio.ensure_future(layer.receive(channel)) for _ in range(2)]
    await asyncio.sleep(0)

    await layer.group_send("watchers", {"type": "step", "n": 1})
    _, pending = await asyncio.wait(
        readers, timeout=5, return_when=asyncio.FIRST_COMPLETED
    )
    sweep_due(layer)
    await layer.group_send("watchers", {"type": "step", "n": 2})
    await asyncio.wait_for(asyncio.gather(*pending), 5)

    assert sorted(reader.result()["n"] for reader in readers) == [1, 2]
    assert layer._reading == {}


def test_a_queue_read_on_a_loop_now_gone_is_replaced_with_its_messages(layer):
    """A process may run one event loop after another (tests do): a queue
    binds itself to the loop that first waits on it."""
    channel = asyncio.run(layer.new_channel())

    async def group_add_then_read_one() -> dict:
        await layer.group_add("watchers", channel)
        reader = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)  # waiting: the queue is this loop's now
        await layer.group_send("watchers", {"type": "step", "n": 1})
        return await reader

    async def send_then_read_two() -> list[dict]:
        await layer.group_send("watchers", {"type": "step", "n": 2})
        first = await layer.receive(channel)  # what waited in the old queue
        reader = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)
        await layer.group_send("watchers", {"type": "step", "n": 3})
        return [first, await reader]

    assert asyncio.run(group_add_then_read_one())["n"] == 1
    assert [m["n"] for m in asyncio.run(send_then_read_two())] == [2, 3]


async def test_a_heard_channel_has_its_messages_handed_on_in_the_send(layer):
    heard, other = [], await layer.new_channel()
    channel = await layer.new_channel()
    layer.hear(channel, heard.append)
    await layer.group_add("control", channel)
    await layer.group_add("control", other)

    await layer.group_send("control", {"type": "interrupt", "n": 1})
    await layer.send(channel, {"type": "interrupt", "n": 2})

    assert heard == [{"type": "interrupt", "n": 1}, {"type": "interrupt", "n": 2}]
    assert channel not in layer.channels  # nothing queued for it
    assert (await layer.receive(other))["n"] == 1


async def test_a_listener_that_fails_is_logged_and_the_send_goes_on(layer, caplog):
    failing, other = await layer.new_channel(), await layer.new_channel()
    layer.hear(failing, lambda message: 1 / 0)
    await layer.group_add("control", failing)
    await layer.group_add("control", other)

    await layer.group_send("control", {"type": "interrupt"})

    assert (await layer.receive(other)) == {"type": "interrupt"}
    assert f"the listener of {failing} failed" in caplog.text


async def test_a_channel_no_longer_heard_is_queued_for_again(layer):
    heard, channel = [], await layer.new_channel()
    layer.hear(channel, heard.append)
    await layer.group_add("control", channel)
    layer.unhear(channel)

    await layer.group_send("control", {"type": "interrupt"})

    assert heard == []
    assert await layer.receive(channel) == {"type": "interrupt"}


async def test_a_sender_on_another_loop_has_the_listener_run_on_its_own(layer):
    heard, channel = [], await layer.new_channel()
    layer.hear(
        channel, lambda message: heard.append((message, asyncio.get_running_loop()))
    )
    await layer.group_add("control", channel)

    # A sync test's push, say: on a loop of its own, in another thread.
    await asyncio.to_thread(
        asyncio.run, layer.group_send("control", {"type": "interrupt"})
    )

    assert heard == [({"type": "interrupt"}, asyncio.get_running_loop())]
