"""The in-memory channel layer, fit for many watchers.

Channels' own `InMemoryChannelLayer` scans every channel and every group for
expired entries on each `group_send` and `receive`, starts a task per member
and deep-copies the message for each: with 300 watchers on a run that is the
server's hot path. This one cleans up at most once a second and puts one copy
of a group message in every member's queue (the app's consumers read events,
never change them). Its `receive` also keeps a channel's queue while the
channel is read: Channels' own builds a queue on every call and drops it
whenever it empties, so each event cost every watcher two new queues.

A channel can also be heard (`hear`): its messages are handed to a callback
in the sender's own call, with no queue and no task to wake on the way. The
runtime's supervisor hears its control groups so (runtime/control.py): an
interrupt reaches the execution process's socket inside the door's push.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from copy import deepcopy

from channels import layers

#: How often expired messages and memberships are swept, in seconds.
CLEAN_EVERY = 1.0

logger = logging.getLogger(__name__)


def hand(channel: str, on_message: Callable[[dict], None], message: dict) -> None:
    """Hand `message` to the listener of heard `channel`: what it raises is
    logged, and the sender (or the reader) goes on."""
    try:
        on_message(message)
    except Exception:
        logger.exception("the listener of %s failed", channel)


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._cleaned_at = 0.0
        #: Channel → how many `receive` calls wait on its queue now.
        self._reading: dict[str, int] = {}
        #: Channel → the event loop its queue was last read on: a queue
        #: binds itself to the loop that first waits on it.
        self._read_on: dict[str, asyncio.AbstractEventLoop] = {}
        #: Channel → the loop and the callback its messages are handed to
        #: (`hear`).
        self._heard: dict[
            str, tuple[asyncio.AbstractEventLoop, Callable[[dict], None]]
        ] = {}

    def hear(self, channel: str, on_message: Callable[[dict], None]) -> None:
        """Hand each message sent to `channel` (or to a group it is in) to
        `on_message` instead of queueing it for `receive`: in the sender's
        call when the sender is on the loop this is called on, else soon
        after on that loop. `on_message` must not block; what it raises is
        logged, and the send goes on."""
        self.require_valid_channel_name(channel)
        self._heard[channel] = (asyncio.get_running_loop(), on_message)

    def unhear(self, channel: str) -> None:
        self._heard.pop(channel, None)

    def _hand(self, channel: str, message: dict) -> None:
        loop, on_message = self._heard[channel]
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            hand(channel, on_message, message)
        else:  # a sender on another thread's loop: the listener's own runs it
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(hand, channel, on_message, message)

    async def send(self, channel: str, message: dict) -> None:
        if channel not in self._heard:
            return await super().send(channel, message)
        assert isinstance(message, dict), "message is not a dict"
        assert "type" in message, "message does not have a type"
        self.require_valid_channel_name(channel)
        self._hand(channel, deepcopy(message))

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY:
            self._cleaned_at = now
            super()._clean_expired()
            # An empty queue nobody waits on: its reader is gone (or between
            # two reads, and its next read makes it a new one).
            for channel, queue in list(self.channels.items()):
                if queue.empty() and channel not in self._reading:
                    del self.channels[channel]
            for channel in self._read_on.keys() - self.channels.keys():
                del self._read_on[channel]

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        loop = asyncio.get_running_loop()
        queue = self.channels.get(channel)
        if queue is None or self._read_on.get(channel, loop) is not loop:
            # None yet, or one read on another loop (a test's, gone): a new
            # one, with whatever waits in the old.
            fresh = asyncio.Queue(maxsize=self.get_capacity(channel))
            while queue is not None and not queue.empty():
                fresh.put_nowait(queue.get_nowait())
            queue = self.channels[channel] = fresh
        self._read_on[channel] = loop
        self._reading[channel] = self._reading.get(channel, 0) + 1
        try:
            _, message = await queue.get()
        finally:
            if self._reading[channel] == 1:
                del self._reading[channel]
            else:
                self._reading[channel] -= 1
        return message

    async def group_send(self, group: str, message: dict) -> None:
        self.group_send_nowait(group, message)

    def group_send_nowait(
        self, group: str, message: dict, *, copy: bool = True
    ) -> None:
        """`group_send` without an await: every member's copy is queued when
        it returns. On the loop the layer's queues belong to (they are
        asyncio's, not thread-safe). `copy=False`: `message` is the caller's
        own copy already, which nobody changes after."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        entry = (time.time() + self.expiry, deepcopy(message) if copy else message)
        for channel in list(members):
            if channel in self._heard:
                self._hand(channel, entry[1])
                continue
            queue = self.channels.get(channel)
            if queue is None:
                queue = asyncio.Queue(maxsize=self.get_capacity(channel))
                self.channels[channel] = queue
            # At most once, as Channels' own layer: a full reader is behind.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(entry)
