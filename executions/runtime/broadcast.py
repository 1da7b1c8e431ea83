"""Sending to the channel layer: what browsers and runners hear.

Doors call the sync helpers; they send after the surrounding transaction
commits, so a listener that reads the database sees what it was told.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
from copy import deepcopy

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from .. import layers
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


def from_sync(method: str, name: str, message: dict, *, wait: bool = True) -> None:
    """`group_send` or `send` from sync code, best effort.

    On channels_redis's pub/sub layer that is one PUBLISH on a connection
    this process keeps (`_SyncPublisher`), from the calling thread: no event
    loop, no thread hop, in a door's thread as in a management command, a
    Celery task or a long-lived client calling the service.

    A group send on the app's in-memory layer from an ASGI server's sync
    view (asgiref's `sync_to_async`) is one callback on the server's loop,
    which its queues belong to, queued after this thread's earlier pushes
    and before its view's answer. `wait`: until the loop has run it. A push
    to a runner waits: a waiting thread leaves the loop the GIL at once,
    where a busy one would hold it until its next I/O, and the supervisor
    hears its control group in the send itself (`layers.hear`), so the
    relay to the execution process is done when the wait ends. The
    watchers' pushes need not wait.

    Otherwise: inside a sync view, and with other in-memory layers, through
    asgiref's `async_to_sync`; anywhere else `async_to_sync` would make a
    new event loop, and with it a new connection, for every push: those run
    on one loop this process keeps for them instead. These always wait."""
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
    if (
        outer is not None
        and method == "group_send"
        and isinstance(layer, layers.InMemoryChannelLayer)
    ):
        queued = concurrent.futures.Future() if wait else None
        try:
            outer.call_soon_threadsafe(_queue, layer, name, deepcopy(message), queued)
        except RuntimeError:  # the loop is closed: nobody is left to hear
            return
        if queued is not None:
            with contextlib.suppress(TimeoutError):
                queued.result(timeout=QUEUE_WAIT)
        return
    if outer is not None or isinstance(layer, InMemoryChannelLayer):
        async_to_sync(_deliver)(method, name, message)
        return
    future = asyncio.run_coroutine_threadsafe(
        _deliver(method, name, message), _push_loop()
    )
    future.result()


#: Seconds a sync view waits for the server's loop to queue its push: a
#: loop that stopped without closing would never run it.
QUEUE_WAIT = 5.0


def _queue(
    layer: layers.InMemoryChannelLayer,
    group: str,
    message: dict,
    queued: concurrent.futures.Future | None,
) -> None:
    try:
        layer.group_send_nowait(group, message, copy=False)
    except Exception:
        quiet.warning("layer", "group_send to %s failed", group, exc_info=True)
    else:
        quiet.recovered("layer")
    finally:
        if queued is not None:
            queued.set_result(None)


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


def send_on_commit(group: str, message: dict, *, wait: bool = True) -> None:
    """`group_send` once the transaction commits. `wait=False`: on the
    in-memory layer from a sync view, do not wait for the server's loop to
    queue it (`from_sync`)."""
    transaction.on_commit(lambda: from_sync("group_send", group, message, wait=wait))


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
    # Nothing the door does next waits for the watchers.
    for group, message in status_messages(snapshot, event):
        send_on_commit(group, message, wait=False)


async def status_changed(snapshot: dict, event: str = groups.STATUS) -> None:
    for group, message in status_messages(snapshot, event):
        await send(group, message)


def interrupt_on_commit(execution_id, *, force: bool) -> None:
    """Tell the supervisor, wherever it is: the fast path after the durable one."""
    send_on_commit(
        groups.control_group(execution_id),
        {"type": groups.INTERRUPT, "force": force},
    )
