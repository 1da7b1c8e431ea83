"""Websockets opened through the real ASGI application (origin check, session
auth, routing), for tests that drive a door over a socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from peace_site.asgi import application

TIMEOUT = 10  # seconds: only to turn a hang into a failure
HOST = b"testserver"
ORIGIN = b"http://testserver"


@database_sync_to_async
def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@contextlib.asynccontextmanager
async def socket(
    path: str, user=None, *, origin: bytes | None = ORIGIN
) -> AsyncIterator[tuple[WebsocketCommunicator, bool]]:
    """Open `path` as `user` (anonymous if None) from `origin` (none if None);
    yield the communicator and whether the handshake was accepted."""
    headers = [(b"host", HOST)]
    if origin is not None:
        headers.append((b"origin", origin))
    if user is not None:
        headers.append((b"cookie", await session_cookie(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        yield communicator, connected
    finally:
        await communicator.disconnect()


async def receive(communicator: WebsocketCommunicator) -> dict:
    return await communicator.receive_json_from(timeout=TIMEOUT)


async def close_code(communicator: WebsocketCommunicator) -> int:
    """The code the server closed with (after accepting, as refusals do)."""
    output = await communicator.receive_output(TIMEOUT)
    assert output["type"] == "websocket.close", output
    return output["code"]


async def ping(communicator: WebsocketCommunicator) -> None:
    """Prove the socket is open and answering."""
    await communicator.send_json_to({"type": "ping"})
    assert await receive(communicator) == {"type": "pong"}
