"""The ASGI server's side of running executions in-process."""

from __future__ import annotations

import asyncio
import sys

from . import pool


class ServerLifecycle:
    """ASGI wrapper that binds in-process runs to the server's event loop on
    the first request, and under daphne drains them on shutdown: each is
    interrupted gracefully and recorded with source `shutdown`."""

    def __init__(self, app) -> None:
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope, receive, send):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._bind(loop)
        return await self.app(scope, receive, send)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        runners = pool.bind(loop)
        # Only under daphne, whose asyncio reactor is already installed:
        # importing the reactor anywhere else would install another one.
        if "twisted.internet.reactor" in sys.modules:
            from twisted.internet import defer, reactor

            reactor.addSystemEventTrigger(
                "before",
                "shutdown",
                lambda: defer.Deferred.fromFuture(
                    asyncio.ensure_future(runners.drain())
                ),
            )
