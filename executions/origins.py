"""The websocket origin check, as strict as Django's CSRF origin check.

channels' `AllowedHostsOriginValidator` compares only the origin's host with
`ALLOWED_HOSTS`, so `http://site:8080` passes for a site served at
`https://site`, where HTTP's CSRF check refuses it. `SameOriginValidator`
accepts what `CsrfViewMiddleware` accepts: the origin equal to the
connection's own scheme, host and port (the host in `ALLOWED_HOSTS`), or one
of `CSRF_TRUSTED_ORIGINS` (exact, or `scheme://*.domain`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _allowed_hosts() -> list[str]:
    # As HttpRequest.get_host: with DEBUG and no ALLOWED_HOSTS, localhost.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def _is_secure(scope: dict[str, Any]) -> bool:
    # As HttpRequest.is_secure: the proxy's header, if one is configured.
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = header.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, name)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "wss"


def _own_origin(scope: dict[str, Any]) -> str | None:
    """`scheme://host[:port]` of the connection, if its host is allowed."""
    host = _header(scope, b"host")
    if host is None and scope.get("server"):
        name, port = scope["server"][0], scope["server"][1]
        host = name if port in (80, 443, None) else f"{name}:{port}"
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host}"


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the handshake's `Origin` may open a socket here."""
    origin = _header(scope, b"origin")
    if not origin:
        return False
    if origin == _own_origin(scope):
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in trusted:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        netloc.startswith("*.")
        and parsed.scheme == scheme
        and is_same_domain(parsed.netloc, netloc[1:])
        for scheme, _, netloc in (pattern.partition("://") for pattern in trusted)
    )


class SameOriginValidator:
    """ASGI middleware: a websocket handshake from another origin is
    refused (403) before it reaches the session or the consumers."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator is for websockets only.")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
