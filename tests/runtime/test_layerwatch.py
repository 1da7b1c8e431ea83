"""A channel layer that lost messages (Redis away) is noticed, and the open
sockets resync once it is back (executions/runtime/layerwatch.py)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import InMemoryChannelLayer

from executions.runtime import layerwatch


class Flaky(InMemoryChannelLayer):
    """Loses whatever is sent while `down`, as Redis pub/sub does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failing = False

    async def send(self, channel, message):
        if self.failing:
            raise ConnectionError("redis is down")
        if not self.down:
            await super().send(channel, message)


class Socket:
    def __init__(self) -> None:
        self.resyncs = 0

    async def resync_after_gap(self) -> None:
        self.resyncs += 1


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(layerwatch, "PROBE_EVERY", 0.02)
    monkeypatch.setattr(layerwatch, "PROBE_TIMEOUT", 0.1)


async def wait_for(condition, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


@pytest.mark.parametrize("outage", ["lost", "failing"])
async def test_sockets_resync_once_after_an_outage(fast, outage):
    layer = Flaky()
    socket = Socket()
    layerwatch.sockets.add(socket)
    watching = asyncio.ensure_future(layerwatch.watch(layer))
    try:
        await asyncio.sleep(0.3)
        assert socket.resyncs == 0  # a healthy layer: nothing to catch up

        setattr(layer, "down" if outage == "lost" else "failing", True)
        await asyncio.sleep(0.3)
        assert socket.resyncs == 0  # not while it is away: nothing to read yet

        layer.down = layer.failing = False
        await wait_for(lambda: socket.resyncs == 1)
        await asyncio.sleep(0.3)
        assert socket.resyncs == 1  # once per outage
    finally:
        watching.cancel()
        layerwatch.sockets.discard(socket)


async def test_a_socket_that_fails_to_resync_does_not_stop_the_others(fast):
    class Broken(Socket):
        async def resync_after_gap(self) -> None:
            raise RuntimeError("closed meanwhile")

    fine, broken = Socket(), Broken()
    layerwatch.sockets.update({fine, broken})
    try:
        await layerwatch.resync_all()
    finally:
        layerwatch.sockets.difference_update({fine, broken})

    assert fine.resyncs == 1
