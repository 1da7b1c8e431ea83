"""channels_redis's pub/sub layer, reading as soon as it has a subscription.

channels_redis's reader (`RedisSingleShardConnection._do_receiving`) sleeps
0.1 s whenever its connection has nothing subscribed, and it starts before
the first SUBSCRIBE goes out. So whatever is published in the 0.1 s after a
quiet spell waits for that sleep to end: a run's first interrupt under a
worker whose loop was new, the first events of the first watcher of a quiet
server. `make bench` measured 45-60 ms p50 for an interrupt in a run's first
moments under Celery and Tasks, against 8-10 ms later in the same runs.

This layer's reader waits for the subscription instead, and otherwise reads
as channels_redis's does (`get_message` with a 0.1 s timeout, the same
handling of errors). Name it in CHANNEL_LAYERS as
`executions.pubsub.RedisPubSubChannelLayer`, with channels_redis's options.

A channel can also be heard, as on the app's in-memory layer
(`executions.layers`): what reaches it, or a group it is in, is handed to a
callback in the reader's own call, not queued for a task that `receive`s it
to wake for on the loop's next turn. The runtime hears its control groups
so (runtime/control.py), in the supervisor and in the execution process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from channels_redis import pubsub
from channels_redis.utils import _wrap_close

from .layers import hand

# channels_redis's own logger: what its reader logged, this one logs under
# the same name (and the settings' filters of repeats apply to both).
logger = logging.getLogger("channels_redis.pubsub")


class RedisPubSubChannelLayer(pubsub.RedisPubSubChannelLayer):
    def _get_layer(self) -> pubsub.RedisPubSubLoopLayer:
        # channels_redis's own, with this module's loop layer.
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(
                *self._args, **self._kwargs, channel_layer=self
            )
            _wrap_close(self, loop)
        return layer

    def hear(self, channel: str, on_message: Callable[[dict], None]) -> None:
        """Hand each message that reaches `channel` (made by `new_channel`
        on this loop), or a group it is in, to `on_message` in the reader's
        call on this loop, instead of queueing it for `receive`.
        `on_message` must not block; what it raises is logged."""
        self._get_layer().heard[channel] = on_message

    def unhear(self, channel: str) -> None:
        """Hand `channel`'s messages on no more; what reaches it after is
        queued for `receive` again."""
        self._get_layer().heard.pop(channel, None)

    async def close_channel(self, channel: str) -> None:
        """Forget `channel` and unsubscribe it in Redis, as a cancelled
        `receive` does: what a heard channel, which nobody `receive`s, needs
        when its listener leaves."""
        layer = self._get_layer()
        layer.heard.pop(channel, None)
        if layer.channels.pop(channel, None) is not None:
            await layer._get_shard(channel).unsubscribe(channel)


class _LoopLayer(pubsub.RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]
        #: Channel → the callback its messages are handed to (`hear`).
        self.heard: dict[str, Callable[[dict], None]] = {}


class _Shard(pubsub.RedisSingleShardConnection):
    def __init__(self, host, channel_layer) -> None:
        super().__init__(host, channel_layer)
        self._subscribed = asyncio.Event()

    async def subscribe(self, channel) -> None:
        await super().subscribe(channel)
        self._subscribed.set()

    async def _do_receiving(self) -> None:
        while True:
            try:
                if not (self._pubsub and self._pubsub.subscribed):
                    self._subscribed.clear()
                    await self._subscribed.wait()
                    continue
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=0.1
                )
                self._receive_message(message)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException:
                logger.exception("Unexpected exception in receive task")
                await asyncio.sleep(1)

    def _receive_message(self, message) -> None:
        layer = self.channel_layer
        if message is None or not layer.heard:
            return super()._receive_message(message)
        # As channels_redis's: to the channel, or to each member of the group.
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        if name in layer.channels:
            members = (name,)
        else:
            members = tuple(layer.groups.get(name, ()))
        for channel in members:
            on_message = layer.heard.get(channel)
            if on_message is not None:
                try:
                    data = layer.channel_layer.deserialize(message["data"])
                except Exception:  # not one of ours: the reader goes on
                    logger.exception("a message to %s could not be read", channel)
                    continue
                hand(channel, on_message, data)
            elif channel in layer.channels:
                layer.channels[channel].put_nowait(message["data"])
