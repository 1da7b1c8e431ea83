"""Sessions on long-lived sockets: `AuthMiddlewareStack` resolves the session
once, at the handshake, so a socket re-validates it here, and a logout tells
that session's sockets to close.

Every socket of a user joins `user_group(user_id)`; a logout sends
`session.ended` there with `session_tag(key)`, and the sockets of that
session close.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

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
