"""Sessions on long-lived sockets: `AuthMiddlewareStack` resolves the session
once, at the handshake, so a socket re-validates it here, and a logout tells
that session's sockets to close.

Every socket of a user joins `user_group(user_id)`; a logout sends
`session.ended` there with `session_tag(key)`, and the sockets of that
session close.
"""

from __future__ import annotations

import asyncio
import functools
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
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user,
    get_user_model,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.dispatch import receiver
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from . import permissions, services
from .permissions import MODEL_BACKEND

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
    authentication backend (the user's row with their session's data beside
    it), in two or more through others."""
    store = _default_store()
    model = get_user_model()
    alias = router.db_for_read(model)
    if store is None or router.db_for_read(store.get_model_class()) != alias:
        user = session_user(session_key)
        if not user.is_authenticated or user.pk != user_id:
            return None
        return user
    if not session_key:
        return None
    rows = list(_user_with_session(store, connections[alias], session_key, user_id))
    if not rows or rows[0].executions_session is None:
        return None
    user = rows[0]
    session = _decoded(store, user.executions_session)
    del user.executions_session
    return user if _stands_for(session, user, user_id) else None


def _user_with_session(store, connection, session_key: str, user_id: Any):
    """The user's row and, beside it, the data of their session if it has
    not expired; written from the models' meta (the ORM's building of the
    subquery took 0.45 ms of the 0.55 the check cost)."""
    quote = connection.ops.quote_name
    users, sessions = get_user_model()._meta, store.get_model_class()._meta
    sql = (
        f"SELECT u.*, (SELECT s.{quote(sessions.get_field('session_data').column)} "
        f"FROM {quote(sessions.db_table)} s "
        f"WHERE s.{quote(sessions.pk.column)} = %s "
        f"AND s.{quote(sessions.get_field('expire_date').column)} > %s) "
        f"AS executions_session "
        f"FROM {quote(users.db_table)} u WHERE u.{quote(users.pk.column)} = %s"
    )
    params = [
        session_key,
        connection.ops.adapt_datetimefield_value(timezone.now()),
        users.pk.get_db_prep_value(user_id, connection),
    ]
    return (
        get_user_model()._default_manager.db_manager(connection.alias).raw(sql, params)
    )


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
    answers = _in_bulk(keys)
    if answers is not None:
        return answers
    can_view: dict[Any, bool] = {}
    return {key: _standing(*key, can_view) for key in keys}


def _in_bulk(keys: list[tuple]) -> dict[tuple, tuple[Any, bool]] | None:
    """`_standing` for all of `keys` in three queries (the sessions, their
    users, which of them may view), with the default session store and
    authentication backend; None with others (each key is then checked on
    its own, through them). Checked one by one, 300 watchers' sessions took
    0.7 s of the server's database thread every second.

    The answers are `get_user`'s, short of its side effects: a session whose
    hash no longer matches is reported ended but not flushed, and one that
    matches a SECRET_KEY_FALLBACKS hash is valid but not cycled to the new
    key (the browser's next request does both, as Django's middleware
    would)."""
    store = _default_store()
    if store is None:
        return None
    rows = store.get_model_class().objects.filter(
        session_key__in={key for key, _ in keys if key},
        expire_date__gt=timezone.now(),
    )
    sessions = {row.session_key: _decoded(store, row.session_data) for row in rows}
    model = get_user_model()
    user_ids = {key: _named(session, model) for key, session in sessions.items()}
    users = model._default_manager.in_bulk(set(user_ids.values()) - {None})
    viewers = set(
        ModelBackend()
        .with_perm(services.PERMISSIONS["view"])
        .filter(pk__in=list(users))
        .values_list("pk", flat=True)
    )
    answers = {}
    for key in keys:
        session_key, user_id = key
        user = users.get(user_ids.get(session_key))
        if user is None or not _stands_for(sessions[session_key], user, user_id):
            answers[key] = (None, False)
        else:
            answers[key] = (user, user.pk in viewers)
    return answers


@functools.lru_cache(maxsize=4096)
def _decoded(store, data: str) -> dict:
    """A session's data as the store decodes it (its signature checked),
    once per distinct data: a socket's session seldom changes between its
    checks, and the decoding was a fifth of each. Read only."""
    return store().decode(data)


def _default_store():
    """The session store's class if it and the authentication backend are
    Django's own database store and model backend, whose checks are done
    here in fewer queries; None otherwise."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if (
        not issubclass(store, DatabaseStore)
        or store.load is not DatabaseStore.load
        or not permissions.model_backend_only()
    ):
        return None
    return store


def _stands_for(session: dict, user, user_id: Any) -> bool:
    """`get_user`'s verdict on a decoded session and the user it names,
    short of its side effects (see `_in_bulk`), and that this is the
    socket's user."""
    return (
        _named(session, type(user)) == user.pk == user_id
        and ModelBackend().user_can_authenticate(user)
        and _hash_matches(user, session)
    )


def _named(session: dict, model) -> Any:
    """The key of the user a decoded session is logged in as through the
    model backend, or None."""
    if session.get(BACKEND_SESSION_KEY) != MODEL_BACKEND:
        return None
    try:
        return model._meta.pk.to_python(session[SESSION_KEY])
    except (KeyError, ValidationError):
        return None


def _hash_matches(user, session: dict) -> bool:
    """`get_user`'s verification: the session carries the user's auth hash
    (or one made with a fallback secret)."""
    if not hasattr(user, "get_session_auth_hash"):
        return True
    session_hash = session.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    return any(
        constant_time_compare(session_hash, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    )


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
