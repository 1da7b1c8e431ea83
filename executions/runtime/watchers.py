"""Who watches which runs, as the channel layer knows it.

An execution process samples its steps twenty times a second for the people
watching them; with nobody watching, only the database reads its progress,
every `EXECUTIONS_DB_PROGRESS_INTERVAL`. So the supervisor asks the layer at
each poll which of its runs have a watcher, and each execution process
samples at the watchers' pace or at the database's: a hundred runs nobody
watches wake, and send their supervisor step events, ten times less. A
watcher that joins says so on the run's control group (`groups.WATCHED`),
so its events come at the watchers' pace at once, not at the next poll.

The layer is asked in one call per poll: the in-memory layer from its own
table of groups, channels_redis's pub/sub layer with one `PUBSUB NUMSUB`
per shard (every process with a watcher of the run subscribes to its
group's Redis channel). Any other layer cannot say: its runs count as
watched, at the watchers' pace as before.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from channels.layers import InMemoryChannelLayer

from . import groups

#: Channels per `PUBSUB NUMSUB`.
NUMSUB_CHUNK = 500


async def watched(layer, run_ids: list[str]) -> set[str] | None:
    """The runs among `run_ids` someone watches; None if the layer cannot
    tell. No layer: nobody can watch live."""
    if layer is None:
        return set()
    if isinstance(layer, InMemoryChannelLayer):
        return {
            run_id for run_id in run_ids if layer.groups.get(groups.watch_group(run_id))
        }
    pubsub = sys.modules.get("channels_redis.pubsub")
    if pubsub is not None and isinstance(layer, pubsub.RedisPubSubChannelLayer):
        return await _subscribed(layer._get_layer(), run_ids)
    return None


async def _subscribed(loop_layer, run_ids: list[str]) -> set[str]:
    """channels_redis's pub/sub layer: each watch group is a Redis channel
    (named and sharded by the layer itself) that every process with one of
    its watchers subscribes to."""
    names = {
        loop_layer._get_group_channel_name(groups.watch_group(run_id)): run_id
        for run_id in run_ids
    }
    by_shard = defaultdict(list)
    for name in names:
        by_shard[loop_layer._get_shard(name)].append(name)
    found = set()
    for shard, channels in by_shard.items():
        shard._ensure_redis()
        for start in range(0, len(channels), NUMSUB_CHUNK):
            chunk = channels[start : start + NUMSUB_CHUNK]
            for name, count in await shard._redis.pubsub_numsub(*chunk):
                if count:
                    found.add(names[name.decode() if isinstance(name, bytes) else name])
    return found
