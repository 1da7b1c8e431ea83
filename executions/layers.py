"""The in-memory channel layer, fit for many watchers.

Channels' own `InMemoryChannelLayer` scans every channel and every group for
expired entries on each `group_send` and `receive`, starts a task per member
and deep-copies the message for each: with 300 watchers on a run that is the
server's hot path. This one cleans up at most once a second and puts one copy
of a group message in every member's queue (the app's consumers read events,
never change them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from copy import deepcopy

from channels import layers

#: How often expired messages and memberships are swept, in seconds.
CLEAN_EVERY = 1.0


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY:
            self._cleaned_at = now
            super()._clean_expired()

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        entry = (time.time() + self.expiry, deepcopy(message))
        for channel in list(members):
            queue = self.channels.get(channel)
            if queue is None:
                queue = asyncio.Queue(maxsize=self.get_capacity(channel))
                self.channels[channel] = queue
            # At most once, as Channels' own layer: a full reader is behind.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(entry)
