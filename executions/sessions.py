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
from django.contrib.auth import (
    get_user,
)
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from . import services, sessionrows

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


def socket_user(session_key: str | None, user_id: Any) -> Any:
    """The socket's user if its session still stands for them, else None:
    `session_user`'s answer, in one query with Django's session store and
    authentication backend (`sessionrows`), in two or more through others."""
    store = sessionrows.store()
    if store is not None:
        return sessionrows.socket_user(store, session_key, user_id)
    user = session_user(session_key)
    if not user.is_authenticated or user.pk != user_id:
        return None
    return user


current_user = database_sync_to_async(socket_user)


def _standing(
    session_key: str | None, user_id: Any, can_view: dict[Any, bool]
) -> tuple[Any, bool]:
    """The session's user now (None if it ended) and whether they may watch
    (`can_view`: the answers for users already checked in this trip)."""
    user = socket_user(session_key, user_id)
    if user is None:
        return None, False
    if user.pk not in can_view:
        can_view[user.pk] = services.can(user, "view")
    return user, can_view[user.pk]


@database_sync_to_async
def _standings(keys: list[tuple]) -> dict[tuple, tuple[Any, bool]]:
    """`_standing` for each (session key, user id): one trip for them all,
    and one permission check per user, however many sessions they have."""
    answers = sessionrows.in_bulk(keys, services.PERMISSIONS["view"])
    if answers is not None:
        return answers
    can_view: dict[Any, bool] = {}
    return {key: _standing(*key, can_view) for key in keys}


class Standings:
    """Session re-checks shared by every socket of this process, off the
    path of the events they guard.

    - The sockets of one session (a user's tabs, a page's two sockets) ask
      the database once per RECHECK_INTERVAL between them.
    - The sessions that come due while a check is in flight go together in
      the next one: one trip through the server's one database thread for
      all of them, however many sessions watch.
    - An answer past half its life is refreshed in the background while it
      is still used, so a busy socket's events do not wait for the database;
      only an answer past RECHECK_INTERVAL (or none) is waited for.
    - Every answer still in use and past a quarter of its life goes along
      in each trip: the sockets' refreshes fall into step, a trip or two
      per half-life for them all, rather than a trip as each comes due.

    With hundreds of watchers, a trip per session per second, each waited
    for, had saturated that thread, and the events queued behind it."""

    def __init__(self) -> None:
        self._answers: dict[tuple, tuple[float, Any, bool]] = {}
        #: When each key was last checked: whether its answer is in use.
        self._used: dict[tuple, float] = {}
        #: Asked for and not yet in a trip: key → its answer, to come.
        self._waiting: dict[tuple, asyncio.Future] = {}
        #: In the trip in flight.
        self._in_flight: dict[tuple, asyncio.Future] = {}
        self._asking: asyncio.Task | None = None

    async def check(self, session_key: str | None, user_id: Any) -> tuple[Any, bool]:
        key = (session_key, user_id)
        now = self._used[key] = time.monotonic()
        answer = self._answers.get(key)
        if answer is not None:
            age = now - answer[0]
            if age < RECHECK_INTERVAL:
                if age >= RECHECK_INTERVAL / 2:
                    self._ask(key)  # ahead of need, not waited for
                return answer[1], answer[2]
        return await asyncio.shield(self._ask(key))

    def _ask(self, key: tuple) -> asyncio.Future:
        """The answer to come for `key`: the trip in flight's, or the next's."""
        asked = self._in_flight.get(key) or self._waiting.get(key)
        if asked is None:
            asked = self._waiting[key] = _future()
            if self._asking is None:
                self._asking = asyncio.ensure_future(self._trips())
        return asked

    def _along(self, batch: dict[tuple, asyncio.Future]) -> None:
        """Add to `batch` the answers in use (checked within their life)
        that are past a quarter of it."""
        now = time.monotonic()
        for key, (checked_at, _, _) in self._answers.items():
            if (
                key not in batch
                and now - checked_at >= RECHECK_INTERVAL / 4
                and now - self._used.get(key, -RECHECK_INTERVAL) < RECHECK_INTERVAL
            ):
                batch[key] = _future()

    async def _trips(self) -> None:
        try:
            while self._waiting:
                batch = self._in_flight = self._waiting
                self._waiting = {}
                self._along(batch)
                try:
                    answers = await _standings(list(batch))
                except Exception as error:
                    for asked in batch.values():
                        if not asked.done():
                            asked.set_exception(error)
                    continue
                finally:
                    self._in_flight = {}
                now = time.monotonic()
                if len(self._answers) > 10_000:  # ended sessions: forget them
                    self._answers.clear()
                    self._used.clear()
                for key, asked in batch.items():
                    user, can_view = answers[key]
                    self._answers[key] = (now, user, can_view)
                    if not asked.done():
                        asked.set_result((user, can_view))
        finally:
            self._asking = None


def _future() -> asyncio.Future:
    asked = asyncio.get_running_loop().create_future()
    # A refresh nobody waits for may fail: that is not an error to report
    # here (the next check asks again).
    asked.add_done_callback(lambda done: done.cancelled() or done.exception())
    return asked


standings = Standings()
