"""Sessions on long-lived sockets: `AuthMiddlewareStack` resolves the session
once, at the handshake, so a socket re-validates it here, and a logout tells
that session's sockets to close.

Every socket of a user joins `user_group(user_id)`; a logout sends
`session.ended` there with `session_tag(key)`, and the sockets of that
session close.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from . import services

logger = logging.getLogger(__name__)

#: The event a logout sends to its user's group.
SESSION_ENDED = "session.ended"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def user_group(user_id: Any) -> str:
    """The group every socket of one user joins. Hashed, because a custom
    user model's key may hold characters a group name may not."""
    return f"executions.user.{_digest(str(user_id))}"


def session_tag(session_key: str | None) -> str:
    """A session's name in channel-layer messages: not the key itself, which
    is a credential."""
    return _digest(session_key or "")


def session_user(session_key: str | None):
    """The user the session `session_key` is logged in as now, the way
    Django checks it on each request (the session still exists, its auth hash
    matches the user's password); `AnonymousUser` otherwise."""
    if not session_key:
        return AnonymousUser()
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(SimpleNamespace(session=store))


@receiver(user_logged_out, dispatch_uid="executions.sessions.close_sockets")
def close_sockets(sender, request=None, user=None, **kwargs) -> None:
    """Close the sockets of the session that logs out."""
    session = getattr(request, "session", None)
    if user is None or session is None or not session.session_key:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": SESSION_ENDED, "session": session_tag(session.session_key)}
    try:
        async_to_sync(layer.group_send)(user_group(user.pk), event)
    except Exception as error:
        # The sockets still find out: each re-validates its session before
        # it acts and, at most a second apart, before it forwards an event.
        logger.warning("Could not tell %s's sockets of a logout: %s", user, error)


#: A socket re-checks its session and the view permission before it forwards
#: an event, at most once per this many seconds (client actions always do).
RECHECK_INTERVAL = 1.0


@database_sync_to_async
def current_user(session_key: str | None, user_id: Any) -> Any:
    """The socket's user if its session still stands for them, else None."""
    user = session_user(session_key)
    if not user.is_authenticated or user.pk != user_id:
        return None
    return user


@database_sync_to_async
def _standing(session_key: str | None, user_id: Any) -> tuple[Any, bool]:
    """The session's user now (None if it ended) and whether they may watch:
    one trip to the database for both."""
    user = session_user(session_key)
    if not user.is_authenticated or user.pk != user_id:
        return None, False
    return user, services.can(user, "view")


class Standings:
    """Session re-checks shared by every socket of this process: the sockets
    of one session (a user's tabs, a page's two sockets) ask the database
    once per RECHECK_INTERVAL between them, and sockets that ask at the same
    moment wait for the same answer. With hundreds of watchers a check per
    socket per second had saturated the server's one database thread."""

    def __init__(self) -> None:
        self._answers: dict[tuple, tuple[float, Any, bool]] = {}
        self._asking: dict[tuple, asyncio.Future] = {}

    async def check(self, session_key: str | None, user_id: Any) -> tuple[Any, bool]:
        key = (session_key, user_id)
        answer = self._answers.get(key)
        if answer is not None and time.monotonic() - answer[0] < RECHECK_INTERVAL:
            return answer[1], answer[2]
        asking = self._asking.get(key)
        if asking is None:
            asking = asyncio.ensure_future(_standing(session_key, user_id))
            self._asking[key] = asking
            asking.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(asking)

    def _settle(self, key: tuple, done: asyncio.Future) -> None:
        self._asking.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            user, can_view = done.result()
            self._answers[key] = (time.monotonic(), user, can_view)
            if len(self._answers) > 10_000:  # ended sessions: forget them
                self._answers.clear()


standings = Standings()
