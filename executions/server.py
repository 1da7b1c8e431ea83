"""The ASGI server's side of running executions in-process."""

from __future__ import annotations

import asyncio

from . import runner


class ServerLifecycle:
    """ASGI wrapper that binds the in-process runner to the server's event
    loop, so executions started from sync views run on it."""

    def __init__(self, app) -> None:
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope, receive, send):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            runner.bind_server_loop(loop)
        return await self.app(scope, receive, send)
