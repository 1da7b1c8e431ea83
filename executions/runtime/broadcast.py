"""Sending to the channel layer: what browsers and runners hear.

Doors call the sync helpers; they send after the surrounding transaction
commits, so a listener that reads the database sees what it was told.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from . import groups
from .throttle import Throttled

logger = logging.getLogger(__name__)
#: A layer that is down fails every send: one line about it, not thousands.
quiet = Throttled(logger)


async def send(group: str, message: dict) -> None:
    """Send to every member of a group, best effort."""
    await _deliver("group_send", group, message)


async def _deliver(method: str, name: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await getattr(layer, method)(name, message)
    except Exception:
        # Delivery is best effort by design: the database is the truth and
        # runners and browsers re-read it. Never fail the caller's action.
        quiet.warning("layer", "%s to %s failed", method, name, exc_info=True)
    else:
        quiet.recovered("layer")


def from_sync(method: str, name: str, message: dict) -> None:
    """`group_send` or `send` from sync code, best effort, and wait for it.

    On channels_redis's pub/sub layer that is one PUBLISH on a connection
    this process keeps (`_SyncPublisher`), from the calling thread: no event
    loop, no thread hop, in a door's thread as in a management command, a
    Celery task or a long-lived client calling the service. On other layers:
    inside an ASGI server's sync view (asgiref's `sync_to_async`), and with
    the in-memory layer (whose queues belong to their consumers' loop),
    asgiref's `async_to_sync`; anywhere else, `async_to_sync` would make a
    new event loop, and with it a new connection, for every push: those run
    on one loop this process keeps for them instead."""
    layer = get_channel_layer()
    if layer is None:
        return
    publisher = _sync_publisher(layer)
    if publisher is not None:
        try:
            publisher.publish(method, name, message)
        except Exception:
            quiet.warning("layer", "%s to %s failed", method, name, exc_info=True)
        else:
            quiet.recovered("layer")
        return
    outer = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if outer is not None or isinstance(layer, InMemoryChannelLayer):
        async_to_sync(_deliver)(method, name, message)
        return
    future = asyncio.run_coroutine_threadsafe(
        _deliver(method, name, message), _push_loop()
    )
    future.result()


_push = {"loop": None, "pid": None}
_push_lock = threading.Lock()


def _push_loop() -> asyncio.AbstractEventLoop:
    with _push_lock:
        if _push["pid"] != os.getpid():  # none yet, or inherited across fork
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="executions-push", daemon=True
            ).start()
            _push.update(loop=loop, pid=os.getpid())
        return _push["loop"]


class _SyncPublisher:
    """What channels_redis's pub/sub layer sends, sent from sync code.

    Its `group_send(group, message)` and `send(channel, message)` are each
    one PUBLISH of the layer's serialized message (msgpack, encrypted if the
    layer has keys) to a Redis channel named and sharded by the layer's own
    per-loop half, `RedisPubSubLoopLayer`. One is made here for its naming
    and sharding only (it connects nothing until used, and is never used
    to send); the PUBLISH goes on a redis-py connection pool per shard,
    which is thread-safe and starts afresh in a forked child.
    tests/scaleout/test_broadcast.py holds it to the layer's own receive."""

    #: Seconds a PUBLISH may wait on a Redis that accepted the connection but
    #: does not answer, unless the layer's host sets `socket_timeout`: a door
    #: waits that long at most, then the push is given up (the database poll
    #: still delivers).
    TIMEOUT = 5.0

    def __init__(self, layer, loop_layer) -> None:
        import redis

        self._layer = layer
        self._naming = loop_layer
        self._clients = []
        for shard in loop_layer._shards:
            host = {"socket_timeout": self.TIMEOUT, **shard.host}
            address = host.pop("address")
            self._clients.append(redis.Redis.from_url(address, **host))

    @classmethod
    def for_layer(cls, layer) -> _SyncPublisher | None:
        """A publisher for `layer`, or None when it is not the pub/sub layer
        on plain Redis addresses (Sentinel and the core layer keep the loop)."""
        # channels_redis, an optional dependency, is imported if layer is one
        pubsub = sys.modules.get("channels_redis.pubsub")
        if pubsub is None or not isinstance(layer, pubsub.RedisPubSubChannelLayer):
            return None
        loop_layer = pubsub.RedisPubSubLoopLayer(
            *layer._args, channel_layer=layer, **layer._kwargs
        )
        if not all("address" in shard.host for shard in loop_layer._shards):
            return None
        return cls(layer, loop_layer)

    def publish(self, method: str, name: str, message: dict) -> None:
        if method == "group_send":
            name = self._naming._get_group_channel_name(name)
        elif method != "send":
            raise ValueError(f"Unknown layer method {method!r}.")
        index = self._naming._shards.index(self._naming._get_shard(name))
        self._clients[index].publish(name, self._layer.serialize(message))


_publishers: dict[int, tuple[object, _SyncPublisher | None]] = {}


def _sync_publisher(layer) -> _SyncPublisher | None:
    """The layer's publisher, made once per layer object (the layer is
    Django's one per alias; a test that swaps settings makes a new one)."""
    known = _publishers.get(id(layer))
    if known is None or known[0] is not layer:
        try:
            publisher = _SyncPublisher.for_layer(layer)
        except Exception:
            # A host option redis-py's sync client does not take: the pushes
            # still go, through the layer itself on the loop path.
            logger.warning(
                "pushes from sync code go through an event loop: no sync "
                "publisher for this layer",
                exc_info=True,
            )
            publisher = None
        known = (layer, publisher)
        _publishers[id(layer)] = known
    return known[1]


def send_on_commit(group: str, message: dict) -> None:
    transaction.on_commit(lambda: from_sync("group_send", group, message))


def status_messages(snapshot: dict, event: str = groups.STATUS) -> list:
    """The (group, message) pairs that tell watchers of a status change.

    `event` is `execution.created`, `execution.status` or `execution.finished`;
    the list group hears every one as `executions.changed` with `change` set
    to `created`, `status` or `finished`.
    """
    change = event.rsplit(".", 1)[1]
    pairs = [(groups.LIST_GROUP, {"type": groups.LIST_CHANGED, "change": change})]
    if event != groups.CREATED:
        pairs.append((groups.watch_group(snapshot["id"]), {"type": event}))
    return [(group, {**message, "execution": snapshot}) for group, message in pairs]


def status_changed_on_commit(snapshot: dict, event: str = groups.STATUS) -> None:
    for group, message in status_messages(snapshot, event):
        send_on_commit(group, message)


async def status_changed(snapshot: dict, event: str = groups.STATUS) -> None:
    for group, message in status_messages(snapshot, event):
        await send(group, message)


def interrupt_on_commit(execution_id, *, force: bool) -> None:
    """Tell the supervisor, wherever it is: the fast path after the durable one."""
    send_on_commit(
        groups.control_group(execution_id),
        {"type": groups.INTERRUPT, "force": force},
    )
