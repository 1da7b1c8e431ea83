"""Sessions read straight from Django's database session store, for the
model backend: what `get_user` would answer, in fewer queries.

A socket re-validates its session before each action and, at most a second
apart, before it forwards events (executions.sessions). Through Django's
API that is a query for the session, another for its user, and two for the
permissions, each built by the ORM anew. With the default store and backend
these read the rows themselves: one socket's session beside its user and
their permissions in one statement; a trip's worth of sessions in three
queries.

The answers are `get_user`'s, short of its side effects: a session whose
hash no longer matches is reported ended but not flushed, and one that
matches a SECRET_KEY_FALLBACKS hash is valid but not cycled to the new key
(the browser's next request does both, as Django's middleware would).
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from . import permissions, returning
from .permissions import MODEL_BACKEND


def store():
    """The session store's class if it and the authentication backend are
    Django's own database store and model backend, keeping sessions where
    users are; None otherwise (then go through Django's API)."""
    engine = import_module(settings.SESSION_ENGINE).SessionStore
    if (
        not issubclass(engine, DatabaseStore)
        or engine.load is not DatabaseStore.load
        or not permissions.model_backend_only()
        or router.db_for_read(engine.get_model_class())
        != router.db_for_read(get_user_model())
    ):
        return None
    return engine


def socket_user(engine, session_key: str | None, user_id: Any) -> Any:
    """User `user_id` if the session `session_key` still stands for them,
    else None: in one query, the user's row with the session's data beside
    it and the permissions `ModelBackend` would read for them, which are
    kept on the user as `permissions.preload` keeps them (`engine`: what
    `store()` returned)."""
    if not session_key:
        return None
    found = _user_with_session(engine, session_key, user_id)
    if found is None:
        return None
    user, data, held = found
    if not _stands_for(_decoded(engine, data), user, user_id):
        return None
    if held is not None and permissions.wanted(user):
        permissions.keep(user, held)
    return user


def _user_with_session(engine, session_key: str, user_id: Any):
    """The user, their session's data and the (app label, codename) of each
    permission they hold (None where those are not read here), or None for
    no such user or no such live session; in one statement, written from the
    models' meta: the ORM's building of the session's subquery took 0.45 ms
    of the 0.55 the check cost. The permissions come as a row each, by a
    join on `permissions.statement`: the user's columns repeat on each, and
    one row with NULLs stands for none."""
    model = get_user_model()
    alias = router.db_for_read(model)
    connection = connections[alias]
    same_database = router.db_for_read(Permission) == alias
    sql, count, granted = _statement(alias, model, engine, same_database)
    key = model._meta.pk.get_db_prep_value(user_id, connection)
    params = [
        session_key,
        connection.ops.adapt_datetimefield_value(timezone.now()),
        *([key, key] if granted else []),
        key,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows or rows[0][count] is None:
        return None
    # As the ORM converts what it reads.
    user = returning.instance(model, connection, rows[0][:count], local=True)
    held = None
    if granted:
        held = [row[count + 1 :] for row in rows if row[count + 1] is not None]
    return user, rows[0][count], held


@functools.lru_cache(maxsize=16)
def _statement(alias: str, model, engine, same_database: bool) -> tuple[str, int, bool]:
    """`_user_with_session`'s statement, how many of its columns are the
    user's, and whether it reads their permissions too (only where they are
    in the users' database): the same text for every check (what changes is
    in the parameters), built once."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    users, sessions = model._meta, engine.get_model_class()._meta
    fields = users.local_concrete_fields  # a parent model's are deferred
    held = permissions.statement(model, connection) if same_database else None
    sql = (
        f"SELECT {', '.join(f'u.{quote(field.column)}' for field in fields)}, "
        f"(SELECT s.{quote(sessions.get_field('session_data').column)} "
        f"FROM {quote(sessions.db_table)} s "
        f"WHERE s.{quote(sessions.pk.column)} = %s "
        f"AND s.{quote(sessions.get_field('expire_date').column)} > %s)"
        + (", g.*" if held else "")
        + f" FROM {quote(users.db_table)} u"
        + (f" LEFT JOIN ({held}) g ON 1 = 1" if held else "")
        + f" WHERE u.{quote(users.pk.column)} = %s"
    )
    return sql, len(fields), held is not None


def in_bulk(keys: list[tuple], permission: str) -> dict[tuple, tuple[Any, bool]] | None:
    """For each (session key, user id): the user if the session still stands
    for them (else None), and whether they hold `permission`; in three
    queries (the sessions, their users, which of them hold it). None when
    `store()` is: check each through Django then. Checked one by one, 300
    watchers' sessions took 0.7 s of the server's database thread every
    second."""
    engine = store()
    if engine is None:
        return None
    rows = engine.get_model_class().objects.filter(
        session_key__in={key for key, _ in keys if key},
        expire_date__gt=timezone.now(),
    )
    sessions = {row.session_key: _decoded(engine, row.session_data) for row in rows}
    model = get_user_model()
    user_ids = {key: _named(session, model) for key, session in sessions.items()}
    users = model._default_manager.in_bulk(set(user_ids.values()) - {None})
    holders = set(
        ModelBackend()
        .with_perm(permission)
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
            answers[key] = (user, user.pk in holders)
    return answers


@functools.lru_cache(maxsize=4096)
def _decoded(engine, data: str) -> dict:
    """A session's data as the store decodes it (its signature checked),
    once per distinct data: a socket's session seldom changes between its
    checks, and the decoding was a fifth of each. Read only."""
    return engine().decode(data)


def _stands_for(session: dict, user, user_id: Any) -> bool:
    """`get_user`'s verdict on a decoded session and the user it names, and
    that this is the socket's user."""
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
