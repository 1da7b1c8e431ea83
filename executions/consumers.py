"""Websocket consumers: browsers watching one execution, or the list of them
(see DESIGN.md "Websockets").

A consumer only routes: `connect` checks, joins the group, accepts and sends
a snapshot; group handlers forward events; client messages go through a
whitelist, and a bad one is answered with `{"type": "error", "code": ...}`
while the socket stays open.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied

from . import services
from .models import Source
from .runtime.groups import LIST_GROUP, watch_group

# Application close codes (4000-4999), echoing HTTP's.
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

#: How many executions the list socket's snapshot holds, newest first.
LIST_SNAPSHOT_SIZE = 50

_TYPE_NAMES = {bool: "true or false", str: "a string"}


class ClientError(Exception):
    """A client message refused: answered with an error, the socket stays open."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra

    def as_message(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": str(self), **self.extra}


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


# -- database helpers: users are reloaded because AuthMiddlewareStack resolved
# them once, at the handshake, and a socket lives long.


def _reload(user) -> Any:
    if user.is_authenticated:
        fresh = get_user_model()._default_manager.filter(pk=user.pk).first()
        if fresh is not None:
            return fresh
    return AnonymousUser()


@database_sync_to_async
def _check_execution(execution_id: str, user) -> str:
    """The execution's canonical ID, if it exists and `user` may watch it."""
    return str(services.get_execution(execution_id, user=user).id)


@database_sync_to_async
def _execution_snapshot(execution_id: str, user) -> dict[str, Any]:
    return services.get_execution(execution_id, user=_reload(user)).snapshot()


@database_sync_to_async
def _interrupt(
    execution_id: str, user, *, force: bool = False, reason: str = ""
) -> dict[str, Any]:
    result = services.request_interrupt(
        execution_id,
        user=_reload(user),
        source=Source.WEBSOCKET,
        force=force,
        reason=reason,
    )
    return {
        "type": "interrupt",
        "result": result.result,
        "execution": result.execution.snapshot(),
    }


@database_sync_to_async
def _can_view(user) -> bool:
    return services.can(user, "view")


@database_sync_to_async
def _list_snapshot(user) -> list[dict[str, Any]]:
    executions = services.list_executions(user=_reload(user))
    return [execution.snapshot() for execution in executions[:LIST_SNAPSHOT_SIZE]]


# -- consumers -------------------------------------------------------------------


class JsonConsumer(AsyncJsonWebsocketConsumer):
    """What both sockets share: refusing with a close code, one group, the
    client-message whitelist, `ping` and `resync`."""

    #: Client message type → handler method; anything else is refused.
    client_messages: dict[str, str] = {"ping": "client_ping", "resync": "client_resync"}
    group: str | None = None

    async def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    async def refuse(self, code: int) -> None:
        # Accept first: a close before accept reaches the browser as a failed
        # handshake without the code.
        await self.accept()
        await self.close(code=code)

    async def join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.group = group

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def send_snapshot(self) -> None:
        try:
            message = await self.snapshot()
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
        except services.UnknownExecution:
            await self.close(code=CLOSE_NOT_FOUND)
        else:
            await self.send_json(message)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs
    ) -> None:
        try:
            if text_data is None:
                raise ClientError("bad_json", "Send JSON in text frames.")
            # The API's limit: a client message is a few dozen bytes, and
            # daphne alone would let a 1 MiB one through to be decoded.
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if len(text_data) > limit:
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
        except ClientError as error:
            await self.send_json(error.as_message())

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
        await getattr(self, handler)(content)

    async def client_ping(self, content: dict[str, Any]) -> None:
        _fields(content)
        await self.send_json({"type": "pong"})

    async def client_resync(self, content: dict[str, Any]) -> None:
        _fields(content)
        await self.send_snapshot()


class ExecutionConsumer(JsonConsumer):
    """`/ws/executions/<id>/`: one execution's snapshot, then its step, status
    and finished events; the client may interrupt it."""

    client_messages = {**JsonConsumer.client_messages, "interrupt": "client_interrupt"}
    execution_id: str | None = None

    async def connect(self) -> None:
        try:
            self.execution_id = await _check_execution(
                self.scope["url_route"]["kwargs"]["execution_id"], self.scope["user"]
            )
        except PermissionDenied:
            return await self.refuse(CLOSE_FORBIDDEN)
        except services.UnknownExecution:
            return await self.refuse(CLOSE_NOT_FOUND)
        # Join before reading the snapshot, so no event falls between them.
        await self.join(watch_group(self.execution_id))
        await self.accept()
        await self.send_snapshot()

    async def snapshot(self) -> dict[str, Any]:
        execution = await _execution_snapshot(self.execution_id, self.scope["user"])
        return {"type": "snapshot", "execution": execution}

    async def client_interrupt(self, content: dict[str, Any]) -> None:
        fields = _fields(content, force=bool, reason=str)
        try:
            reply = await _interrupt(self.execution_id, self.scope["user"], **fields)
        except PermissionDenied as error:
            raise ClientError("forbidden", str(error)) from None
        except services.NotRunning as error:
            raise ClientError("not_running", str(error), status=error.status) from None
        except services.UnknownExecution as error:
            raise ClientError("not_found", str(error)) from None
        except services.ParamsError as error:
            raise ClientError("bad_message", str(error), fields=error.errors) from None
        await self.send_json(reply)

    async def execution_step(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "step",
                "execution_id": event["execution_id"],
                "step": event["step"],
            }
        )

    async def execution_status(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "status", "execution": event["execution"]})

    async def execution_finished(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "finished", "execution": event["execution"]})


class ExecutionListConsumer(JsonConsumer):
    """`/ws/executions/`: the latest executions, then created / status /
    finished events for any execution."""

    async def connect(self) -> None:
        if not await _can_view(self.scope["user"]):
            return await self.refuse(CLOSE_FORBIDDEN)
        await self.join(LIST_GROUP)
        await self.accept()
        await self.send_snapshot()

    async def snapshot(self) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "executions": await _list_snapshot(self.scope["user"]),
        }

    async def executions_changed(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": event["change"], "execution": event["execution"]})
