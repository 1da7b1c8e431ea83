"""The in-memory layer: Channels' semantics, without its per-send scans."""

from __future__ import annotations

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
    assert layer.channels == {}


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
