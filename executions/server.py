"""The ASGI server's side of running executions in-process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from . import pool

logger = logging.getLogger(__name__)

#: After draining, how long the finished events get to reach open sockets.
FLUSH_SECONDS = 0.5


class ServerLifecycle:
    """ASGI wrapper that binds in-process runs to the server's event loop on
    the first request and, under daphne, drains them on SIGTERM or Ctrl-C.

    Draining comes before daphne's own shutdown, which cancels every
    websocket consumer at once: each run is interrupted gracefully, recorded
    with source `shutdown`, and its `finished` event reaches the watchers
    while their sockets are still open. A second signal forces the runs.
    """

    def __init__(self, app) -> None:
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runners: pool.RunnerPool | None = None
        self._drain: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._runners = pool.bind(loop)
            # Only under daphne, whose asyncio reactor is already installed:
            # importing the reactor anywhere else would install another one.
            if "twisted.internet.reactor" in sys.modules:
                # The asyncio reactor dispatches signals through the loop:
                # this replaces Twisted's immediate stop with the drain.
                for number in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(number, self._shutdown)
        return await self.app(scope, receive, send)

    def _shutdown(self) -> None:
        if self._drain is None:
            logger.warning("shutting down: interrupting in-process executions")
            self._drain = asyncio.ensure_future(self._drain_then_stop())
        else:
            logger.warning("shutting down now: forcing in-process executions")
            asyncio.ensure_future(self._runners.drain(grace=0))

    async def _drain_then_stop(self) -> None:
        from twisted.internet import reactor

        try:
            await self._runners.drain()
            await asyncio.sleep(FLUSH_SECONDS)
        finally:
            if reactor.running:
                reactor.stop()
