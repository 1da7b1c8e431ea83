"""Websocket consumers: browsers watching one execution, or the list of them
(see DESIGN.md "Websockets").

A consumer only routes: `connect` checks, joins the group, accepts and sends
a snapshot; group handlers forward events; client messages go through a
whitelist, and a bad one is answered with `{"type": "error", "code": ...}`
while the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import errors, services, sessions
from .errors import ServiceError
from .flow import Outbox, TokenBucket, close_frames_on_failure, daphne_connection
from .frames import frames
from .models import Execution, Source
from .runtime import broadcast, layerwatch
from .runtime.groups import LIST_GROUP, WATCHED, control_group, watch_group
from .sessions import session_tag, user_group

logger = logging.getLogger(__name__)

# Close codes: the application's (4000-4999) echo HTTP's; 1013 is the
# protocol's "try again later". 1009 ("message too big") is autobahn's, for a
# message over flow.SERVER_MESSAGE_LIMIT, which never reaches the consumer.
CLOSE_SLOW_CLIENT = 4008  # the server would hold more than OUTBOX_LIMIT
CLOSE_LOGGED_OUT = 4401  # the session ended: logout, password change
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429  # kept sending over the rate limit
CLOSE_UNAVAILABLE = 1013  # the channel layer (Redis) cannot be reached

#: The most the server holds for a client that does not read, beyond what
#: the transport holds before it pushes back (64 KiB).
OUTBOX_LIMIT = 1024 * 1024
#: Client messages: a burst of this many, then this many a second.
MESSAGE_BURST = 20
MESSAGE_RATE = 10.0
#: Refusals in a row for the rate before the socket is closed.
RATE_CLOSE_AFTER = 20
#: At most one resync snapshot per this many seconds; more are coalesced.
RESYNC_INTERVAL = 1.0

#: How many executions the list socket's snapshot holds, newest first.
LIST_SNAPSHOT_SIZE = 50

_TYPE_NAMES = {bool: "true or false", str: "a string"}


class ClientError(ServiceError):
    """A client message refused: answered with an error, the socket stays open."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.code = code


class LayerDown(Exception):
    """The channel layer failed under a socket."""


def error_message(error: ServiceError) -> dict[str, Any]:
    """The sockets' one error shape: `{"type": "error", "code": ...}`."""
    return {
        "type": "error",
        "code": error.code,
        "message": error.message,
        **error.extra,
    }


def close_code(error: ServiceError) -> int:
    """How a refusal at the handshake (or of a snapshot) closes the socket."""
    if isinstance(error, errors.UnknownExecution):
        return CLOSE_NOT_FOUND
    return CLOSE_FORBIDDEN


def _fields(content: dict[str, Any], **types: type) -> dict[str, Any]:
    """A message's fields besides `type`, checked against `types`; a null
    field counts as left out."""
    if set(content) - {"type", *types}:
        allowed = ", ".join(["type", *types])
        raise ClientError(
            "bad_message", f"Unexpected field; this message may have only: {allowed}."
        )
    fields = {}
    for name, kind in types.items():
        value = content.get(name)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise ClientError("bad_message", f"{name} must be {_TYPE_NAMES[kind]}.")
        fields[name] = value
    return fields


# -- database helpers: the user is the session's as it stands now, because
# AuthMiddlewareStack resolved it once, at the handshake, and a socket lives
# long.


@database_sync_to_async
def _can_view(user) -> bool:
    return services.can(user, "view")


@database_sync_to_async
def _check_execution(execution_id: str, user) -> str:
    """The execution's canonical ID, if it exists and `user` may watch it."""
    return str(services.get_execution(execution_id, user=user).id)


@database_sync_to_async
def _execution_snapshot(execution_id: str, user) -> dict[str, Any]:
    return services.get_execution(execution_id, user=user).snapshot()


@database_sync_to_async
def _interrupt(
    execution_id: str,
    session_key: str | None,
    user_id: Any,
    *,
    force: bool = False,
    reason: str = "",
) -> tuple[Any, dict[str, Any] | None]:
    """The session's user now (None if it ended: nothing done) and the
    answer to their interrupt, in one trip to the database thread: the
    session re-check and the service's call."""
    user = sessions.socket_user(session_key, user_id)
    if user is None:
        return None, None
    result = services.request_interrupt(
        execution_id, user=user, source=Source.WEBSOCKET, force=force, reason=reason
    )
    return user, {
        "type": "interrupt",
        "result": result.result,
        "execution": result.execution.snapshot(),
    }


@database_sync_to_async
def _list_snapshot(user) -> list[dict[str, Any]]:
    executions = services.list_executions(user=user)
    return Execution.snapshots(executions[:LIST_SNAPSHOT_SIZE])


# -- consumers -------------------------------------------------------------------


class JsonConsumer(AsyncJsonWebsocketConsumer):
    """What both sockets share: the handshake (check, join, accept,
    snapshot), refusing with a close code, the client-message whitelist and
    its rate, `ping` and `resync`, and the guards on what is sent: the
    session and the view permission still stand, and a client that does not
    read is disconnected before the server holds more than OUTBOX_LIMIT."""

    #: Client message type → handler method; anything else is refused.
    client_messages: dict[str, str] = {"ping": "client_ping", "resync": "client_resync"}
    #: Handlers that re-read the session themselves, in the one trip to the
    #: database they make anyway (the others' re-read comes first).
    reads_session: frozenset[str] = frozenset()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.joined: list[str] = []
        self.closing = False
        self.bucket = TokenBucket(rate=MESSAGE_RATE, burst=MESSAGE_BURST)
        self.rate_refusals = 0
        self.checked_at = 0.0
        self.snapshot_at = 0.0
        self.resync_later: asyncio.TimerHandle | None = None
        self.outbox: Outbox | None = None

    # -- what a socket defines

    async def authorize(self, user) -> str:
        """Check `user` may open this socket; the group to join."""
        raise NotImplementedError

    async def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- the handshake

    async def connect(self) -> None:
        user = self.scope["user"]
        connection = daphne_connection(self.base_send)
        self.outbox = Outbox(connection, limit=OUTBOX_LIMIT)
        close_frames_on_failure(connection)
        try:
            group = await self.authorize(user)
        except errors.REFUSALS as exc:
            return await self.refuse(close_code(errors.of(exc)))
        self.user = user
        self.session_key = self.scope["session"].session_key
        self.checked_at = time.monotonic()
        try:
            # Join before reading the snapshot, so no event falls between them.
            await self.join(group)
            await self.join(user_group(user.pk))
        except Exception as error:
            logger.warning("Websocket refused, the channel layer failed: %r", error)
            return await self.refuse(CLOSE_UNAVAILABLE)
        await self.accept()
        layerwatch.sockets.add(self)
        await self.send_snapshot()

    async def resync_after_gap(self) -> None:
        """The layer lost messages (Redis was away): start again from the
        database, as the client's own `resync` would."""
        if not self.closing:
            await self.send_snapshot()

    async def refuse(self, code: int) -> None:
        # Accept first: a close before accept reaches the browser as a failed
        # handshake without the code.
        await self.accept()
        await self.end(code)

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined.append(group)

    async def end(self, code: int) -> None:
        """Close with `code`, once; nothing is sent after it."""
        if self.closing:
            return
        self.closing = True
        if self.resync_later is not None:
            self.resync_later.cancel()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        layerwatch.sockets.discard(self)
        if self.resync_later is not None:
            self.resync_later.cancel()
        for group in self.joined:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as error:
                logger.warning("Could not leave %s: %r", group, error)

    @property
    def channel_receive(self):
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive) -> None:
        # AsyncConsumer.__call__ sets this to the layer's receive, and a
        # failure there (Redis went away) would end the socket with a
        # traceback; LayerDown lets __call__ tell it from a bug of ours.
        async def guarded():
            try:
                return await receive()
            except Exception as error:
                raise LayerDown(error) from error

        self._channel_receive = guarded

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except LayerDown as error:
            logger.warning("Websocket closed, the channel layer failed: %r", error)
            if not self.closing:
                self.closing = True
                await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels (since 4.2) hops to the server's one sync thread before
        every message a consumer handles, to close stale database
        connections. These consumers reach the database only through
        `database_sync_to_async`, which does that itself in the thread it
        uses, so the hop does nothing for them; and with 300 watchers at 20
        events a second it is 6,000 hops a second through one thread, every
        event waiting behind them."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # -- sending, within the outbox

    async def send_json(self, content: Any, close: bool = False) -> None:
        if self.closing:
            return
        text = await self.encode_json(content)
        await self.send_text(text, len(text.encode()), close=close)

    async def send_text(self, text: str, size: int, close: bool = False) -> None:
        """Send JSON text of `size` bytes, within the outbox."""
        if self.closing:
            return
        if self.outbox is not None and not self.outbox.fits(size):
            return await self.end(CLOSE_SLOW_CLIENT)
        await self.send(text_data=text, close=close)
        if self.outbox is not None:
            self.outbox.sent(size)

    async def forward(
        self, event: dict[str, Any], message: dict[str, Any], part: int = 0
    ) -> None:
        """Send `message`, made from group `event`, on, if the session and
        the view permission still stand (checked at most once per
        RECHECK_INTERVAL); its text is the one every watcher sends (`frames`)."""
        due = time.monotonic() - self.checked_at >= sessions.RECHECK_INTERVAL
        if due and not await self.recheck():
            return
        await self.send_text(*frames.text(event, part, message))

    async def recheck(self) -> bool:
        """Re-validate the session and the view permission; close if either
        is gone."""
        user, can_view = await sessions.standings.check(self.session_key, self.user.pk)
        if user is None:
            await self.end(CLOSE_LOGGED_OUT)
            return False
        if not can_view:
            await self.end(CLOSE_FORBIDDEN)
            return False
        self.user = user
        self.checked_at = time.monotonic()
        return True

    async def send_snapshot(self) -> None:
        try:
            message = await self.snapshot()
        except errors.REFUSALS as exc:
            await self.end(close_code(errors.of(exc)))
        else:
            self.snapshot_at = time.monotonic()
            await self.send_json(message)

    async def session_ended(self, event: dict[str, Any]) -> None:
        if event["session"] == session_tag(self.session_key):
            await self.end(CLOSE_LOGGED_OUT)

    # -- client messages

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs
    ) -> None:
        if self.closing:
            return
        if not self.bucket.take():
            self.rate_refusals += 1
            if self.rate_refusals > RATE_CLOSE_AFTER:
                return await self.end(CLOSE_TOO_MANY)
            return await self.send_json(
                error_message(
                    ClientError(
                        "rate_limited",
                        f"Too many messages: at most {MESSAGE_RATE:g} a second.",
                    )
                )
            )
        self.rate_refusals = 0
        try:
            if text_data is None:
                raise ClientError("bad_json", "Send JSON in text frames.")
            # The API's limit: a client message is a few dozen bytes, and
            # daphne lets one up to flow.SERVER_MESSAGE_LIMIT through to be
            # decoded (beyond it, it closes with 1009).
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if limit is not None and len(text_data) > limit:
                raise ClientError(
                    "too_large", f"The message is over {limit} characters."
                )
            try:
                content = await self.decode_json(text_data)
                # Refuse an unpaired surrogate ("\ud800") as api._json_body does.
                json.dumps(content, ensure_ascii=False).encode()
            except (ValueError, RecursionError):
                raise ClientError(
                    "bad_json", "The message is not valid JSON."
                ) from None
            await self.receive_json(content, **kwargs)
        except errors.REFUSALS as exc:
            await self.send_json(error_message(errors.of(exc)))

    async def receive_json(self, content: Any, **kwargs) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            raise ClientError(
                "bad_message", 'A message is a JSON object with a string "type".'
            )
        handler = self.client_messages.get(content["type"])
        if handler is None:
            expected = ", ".join(sorted(self.client_messages))
            raise ClientError(
                "unknown_type", f"Unknown message type; expected one of: {expected}."
            )
        # Every action in the name of the session as it stands now.
        if handler not in self.reads_session:
            user = await sessions.current_user(self.session_key, self.user.pk)
            if user is None:
                return await self.end(CLOSE_LOGGED_OUT)
            self.user = user
        await getattr(self, handler)(content)

    async def client_ping(self, content: dict[str, Any]) -> None:
        _fields(content)
        await self.send_json({"type": "pong"})

    async def client_resync(self, content: dict[str, Any]) -> None:
        _fields(content)
        if self.resync_later is not None:
            return  # one is on its way
        wait = self.snapshot_at + RESYNC_INTERVAL - time.monotonic()
        if wait <= 0:
            return await self.send_snapshot()
        self.resync_later = asyncio.get_running_loop().call_later(
            wait, self._resync_now
        )

    def _resync_now(self) -> None:
        async def resync() -> None:
            self.resync_later = None
            if not self.closing:
                await self.send_snapshot()

        self.resync_task = asyncio.ensure_future(resync())


class ExecutionConsumer(JsonConsumer):
    """`/ws/executions/<id>/`: one execution's snapshot, then its step, log,
    status and finished events; the client may interrupt it."""

    client_messages = {**JsonConsumer.client_messages, "interrupt": "client_interrupt"}
    reads_session = frozenset({"client_interrupt"})
    execution_id: str | None = None

    async def authorize(self, user) -> str:
        self.execution_id = await _check_execution(
            self.scope["url_route"]["kwargs"]["execution_id"], user
        )
        return watch_group(self.execution_id)

    async def join(self, group: str) -> None:
        await super().join(group)
        if group == watch_group(self.execution_id):
            # Its execution process samples for watchers from now on, not
            # from its supervisor's next look (runtime/watchers.py).
            await broadcast.send(control_group(self.execution_id), {"type": WATCHED})

    async def snapshot(self) -> dict[str, Any]:
        execution = await _execution_snapshot(self.execution_id, self.user)
        return {"type": "snapshot", "execution": execution}

    async def client_interrupt(self, content: dict[str, Any]) -> None:
        fields = _fields(content, force=bool, reason=str)
        user, reply = await _interrupt(
            self.execution_id, self.session_key, self.user.pk, **fields
        )
        if user is None:
            return await self.end(CLOSE_LOGGED_OUT)
        self.user = user
        await self.send_json(reply)

    async def execution_progress(self, event: dict[str, Any]) -> None:
        for part, step in enumerate(event["steps"]):
            await self.forward(
                event,
                {"type": "step", "execution_id": event["execution_id"], "step": step},
                part,
            )

    async def execution_log(self, event: dict[str, Any]) -> None:
        await self.forward(
            event,
            {
                "type": "log",
                "execution_id": event["execution_id"],
                "lines": event["lines"],
                "dropped": event["dropped"],
            },
        )

    async def execution_status(self, event: dict[str, Any]) -> None:
        await self.forward(event, {"type": "status", "execution": event["execution"]})

    async def execution_finished(self, event: dict[str, Any]) -> None:
        await self.forward(event, {"type": "finished", "execution": event["execution"]})


class ExecutionListConsumer(JsonConsumer):
    """`/ws/executions/`: the latest executions, then created / status /
    finished events for any execution."""

    async def authorize(self, user) -> str:
        if not await _can_view(user):
            raise errors.Forbidden("You do not have permission to view executions.")
        return LIST_GROUP

    async def snapshot(self) -> dict[str, Any]:
        return {"type": "snapshot", "executions": await _list_snapshot(self.user)}

    async def executions_changed(self, event: dict[str, Any]) -> None:
        await self.forward(
            event, {"type": event["change"], "execution": event["execution"]}
        )


class NotFoundConsumer(AsyncJsonWebsocketConsumer):
    """Any other websocket path: closed with 4404, as an unknown ID is."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NOT_FOUND)
