"""The websocket origin check (executions/origins.py), through the real ASGI
application: it refuses what Django's CSRF origin check refuses."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from executions.origins import origin_allowed
from tests.sockets import ping, receive, socket

pytestmark = pytest.mark.django_db(transaction=True)


def scope(origin: str | None, host: str = "testserver", scheme: str = "ws") -> dict:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://testserver", "testserver", "ws"),
        ("https://testserver", "testserver", "wss"),
        ("http://localhost:8000", "localhost:8000", "ws"),
    ],
)
def test_origin_allowed_accepts_the_same_scheme_host_and_port(origin, host, scheme):
    assert origin_allowed(scope(origin, host, scheme))


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        pytest.param("https://testserver", "testserver", "ws", id="other-scheme"),
        pytest.param("http://testserver", "testserver", "wss", id="downgraded"),
        pytest.param("http://testserver:8080", "testserver", "ws", id="other-port"),
        pytest.param("http://localhost:8001", "localhost:8000", "ws", id="port"),
        pytest.param("http://evil.example", "testserver", "ws", id="other-host"),
        pytest.param("http://evil.example", "evil.example", "ws", id="bad-host"),
        pytest.param(None, "testserver", "ws", id="no-origin"),
        pytest.param("null", "testserver", "ws", id="null"),
    ],
)
def test_origin_allowed_refuses_what_csrf_refuses(origin, host, scheme):
    assert not origin_allowed(scope(origin, host, scheme))


def test_origin_allowed_honours_the_proxy_header(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = scope("https://testserver")
    proxied["headers"].append((b"x-forwarded-proto", b"https"))

    assert origin_allowed(proxied)
    assert not origin_allowed(scope("https://testserver"))


def test_origin_allowed_honours_csrf_trusted_origins(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example", "https://*.example.org"]

    assert origin_allowed(scope("https://app.example"))
    assert origin_allowed(scope("https://a.example.org"))
    assert not origin_allowed(scope("http://a.example.org"))
    assert not origin_allowed(scope("https://app.example:444"))


async def test_socket_from_another_port_is_refused_at_the_handshake(make_user):
    user = await database_sync_to_async(make_user)("view")

    async with socket("/ws/executions/", user, origin=b"http://testserver:8080") as (
        _,
        connected,
    ):
        pass
    async with socket("/ws/executions/", user) as (communicator, accepted):
        await receive(communicator)
        await ping(communicator)

    assert not connected
    assert accepted
