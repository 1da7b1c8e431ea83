"""Who watches which runs, as the project's Redis pub/sub layer knows it
(executions/runtime/watchers.py, on a real redis-server): every process with
a watcher of a run subscribes to its group's channel, and one PUBSUB NUMSUB
says which have one, whichever process asks."""

from __future__ import annotations

import uuid

import pytest

from executions.pubsub import RedisPubSubChannelLayer
from executions.runtime import groups, watchers

pytestmark = pytest.mark.e2e


async def test_runs_watched_from_another_process_are_found_the_rest_not(redis_server):
    server = RedisPubSubChannelLayer(hosts=[redis_server.url])  # a watcher's
    supervisor = RedisPubSubChannelLayer(hosts=[redis_server.url])  # asks
    watched, left, alone = (str(uuid.uuid4()) for _ in range(3))
    for run_id in (watched, left):
        channel = await server.new_channel()
        await server.group_add(groups.watch_group(run_id), channel)
    await server.group_discard(groups.watch_group(left), channel)

    try:
        found = await watchers.watched(supervisor, [watched, left, alone])
    finally:
        await server.flush()
        await supervisor.flush()

    assert found == {watched}


async def test_many_runs_are_asked_in_chunks(redis_server, monkeypatch):
    monkeypatch.setattr(watchers, "NUMSUB_CHUNK", 2)
    server = RedisPubSubChannelLayer(hosts=[redis_server.url])
    supervisor = RedisPubSubChannelLayer(hosts=[redis_server.url])
    runs = [str(uuid.uuid4()) for _ in range(5)]
    for run_id in runs[::2]:
        await server.group_add(groups.watch_group(run_id), await server.new_channel())

    try:
        found = await watchers.watched(supervisor, runs)
    finally:
        await server.flush()
        await supervisor.flush()

    assert found == set(runs[::2])
