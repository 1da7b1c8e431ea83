"""The ASGI server's side of the runtime: it supervises in-process runs.

daphne implements no ASGI lifespan, so the runtime starts when Twisted's
reactor starts (`callWhenRunning`), before any request: the reaper, the
relay and the warm forkserver are there from the server's first moment.
Under a server that speaks ASGI lifespan, its startup event does the same;
anywhere else (a test driving the application directly), the first call.

On SIGTERM or Ctrl-C under daphne, runs drain before daphne's own shutdown,
which cancels every websocket consumer at once: each run is interrupted
gracefully, recorded with source `shutdown`, and its `finished` event
reaches the watchers while their sockets are still open. A second signal
forces the runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from channels.layers import get_channel_layer

from . import dispatch, layerwatch, process, relay
from .supervisor import Supervisor

logger = logging.getLogger(__name__)

#: After draining, how long the finished events get to reach open sockets.
FLUSH_SECONDS = 0.5


class ServerLifecycle:
    """ASGI wrapper that starts the runtime with the server."""

    def __init__(self, app) -> None:
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: Supervisor | None = None
        self._drain: asyncio.Task | None = None
        self._background: list[asyncio.Task] = []
        # Only under daphne, whose asyncio reactor is already installed:
        # importing the reactor anywhere else would install another one.
        if "twisted.internet.reactor" in sys.modules:
            from twisted.internet import reactor

            reactor.callWhenRunning(self._start_under_daphne)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._start(loop, serving=False)
        return await self.app(scope, receive, send)

    def _start(self, loop: asyncio.AbstractEventLoop, *, serving: bool) -> None:
        self._loop = loop
        self._supervisor = dispatch.bind(loop)
        if serving:
            loop.run_in_executor(None, process.warm_up)
            if relay.needed():
                self._background.append(
                    loop.create_task(relay.relay(self._supervisor.identity))
                )
            elif (layer := get_channel_layer()) is not None:
                # A shared layer (Redis) can lose what its sockets were sent.
                self._background.append(loop.create_task(layerwatch.watch(layer)))

    def _start_under_daphne(self) -> None:
        # Twisted fires this before its asyncio loop runs: start on the loop.
        loop = asyncio.get_event_loop()
        loop.call_soon(lambda: self._start(loop, serving=True))
        # The asyncio reactor dispatches signals through the loop: this
        # replaces Twisted's immediate stop with the drain.
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._shutdown)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start(asyncio.get_running_loop(), serving=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._supervisor is not None:
                    await self._supervisor.drain()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _shutdown(self) -> None:
        if self._drain is None:
            logger.warning("shutting down: interrupting in-process executions")
            self._drain = asyncio.ensure_future(self._drain_then_stop())
        else:
            logger.warning("shutting down now: forcing in-process executions")
            asyncio.ensure_future(self._supervisor.drain(grace=0))

    async def _drain_then_stop(self) -> None:
        from twisted.internet import reactor

        try:
            await self._supervisor.drain()
            await asyncio.sleep(FLUSH_SECONDS)
        finally:
            if reactor.running:
                reactor.stop()
