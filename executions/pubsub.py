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
"""

from __future__ import annotations

import asyncio
import logging

from channels_redis import pubsub
from channels_redis.utils import _wrap_close

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


class _LoopLayer(pubsub.RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]


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
