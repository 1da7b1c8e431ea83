"""Faults to inject: a channel layer that loses messages.

Configure with `CONFIG: {"drop": ["execution.interrupt", ...]}`; every
message of those types is counted in `dropped` and never delivered, as a
full channel or an expired Redis group would lose it.
"""

from __future__ import annotations

from collections import Counter

from channels.layers import InMemoryChannelLayer


class LossyLayer(InMemoryChannelLayer):
    def __init__(self, drop=(), **kwargs) -> None:
        super().__init__(**kwargs)
        self.drop = frozenset(drop)
        self.dropped: Counter[str] = Counter()

    async def send(self, channel, message):
        if message.get("type") in self.drop:
            self.dropped[message["type"]] += 1
            return
        await super().send(channel, message)

    async def group_send(self, group, message):
        if message.get("type") in self.drop:
            self.dropped[message["type"]] += 1
            return
        await super().group_send(group, message)
