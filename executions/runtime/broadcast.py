"""Sending to the channel layer: what browsers and runners hear.

Doors call the sync helpers; they send after the surrounding transaction
commits, so a listener that reads the database sees what it was told.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from . import groups
from .throttle import Throttled

logger = logging.getLogger(__name__)
#: A layer that is down fails every send: one line about it, not thousands.
quiet = Throttled(logger)


async def send(group: str, message: dict) -> None:
    """Send to every member of a group, best effort."""
    await _deliver("group_send", group, message)


async def send_to(channel: str, message: dict) -> None:
    """Send to one channel (a worker's wake-up), best effort."""
    await _deliver("send", channel, message)


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


def send_on_commit(group: str, message: dict) -> None:
    transaction.on_commit(lambda: async_to_sync(send)(group, message))


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
