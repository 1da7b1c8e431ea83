"""Pushes from sync code over a real Redis: one PUBLISH from the calling
thread, received by the pub/sub layer as its own sends are
(executions/runtime/broadcast.py, `_SyncPublisher`): the project's layer
(executions/pubsub.py) and channels_redis's own, which users may name."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer

from executions.runtime import broadcast

pytestmark = pytest.mark.e2e

#: How long a message may take to arrive before the test gives up.
ARRIVES_WITHIN = 5.0


@pytest.fixture(
    params=[
        "executions.pubsub.RedisPubSubChannelLayer",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    ]
)
def redis_layer(request, settings, redis_server):
    """A pub/sub layer on `redis_server`, made afresh: the project's, and
    channels_redis's own."""

    def use(**config):
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": request.param,
                "CONFIG": {"hosts": [{"address": redis_server.url}], **config},
            }
        }
        channel_layers.backends.clear()
        return get_channel_layer()

    yield use
    channel_layers.backends.clear()


async def member_of(layer, group: str) -> str:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


def in_a_plain_thread(*args) -> None:
    """As a management command, a Celery task or a script calls it."""
    thread = threading.Thread(target=broadcast.from_sync, args=args)
    thread.start()
    thread.join()


async def test_a_group_send_from_a_plain_thread_reaches_the_layers_members(
    redis_layer,
):
    layer = redis_layer()
    channel = await member_of(layer, "execution-control.x")
    message = {"type": "execution.interrupt", "force": True, "reason": "é"}

    await asyncio.to_thread(
        in_a_plain_thread, "group_send", "execution-control.x", message
    )

    received = await asyncio.wait_for(layer.receive(channel), ARRIVES_WITHIN)
    assert received == message


async def test_a_send_to_one_channel_reaches_it(redis_layer):
    layer = redis_layer()
    channel = await layer.new_channel()
    # The layer subscribes a channel when it first receives on it.
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.2)
    message = {"type": "executions.run", "execution_id": "x"}

    await asyncio.to_thread(broadcast.from_sync, "send", channel, message)

    assert await asyncio.wait_for(receiving, ARRIVES_WITHIN) == message


async def test_a_push_from_a_sync_view_goes_from_its_own_thread(
    redis_layer, monkeypatch
):
    """In daphne, a sync view's push does not wait for the server's loop."""
    layer = redis_layer()
    channel = await member_of(layer, "execution.x")
    threads = []
    publish = broadcast._SyncPublisher.publish

    def recording(self, *args):
        threads.append(threading.current_thread())
        publish(self, *args)

    monkeypatch.setattr(broadcast._SyncPublisher, "publish", recording)
    await sync_to_async(broadcast.from_sync)(
        "group_send", "execution.x", {"type": "execution.status"}
    )

    assert await asyncio.wait_for(layer.receive(channel), ARRIVES_WITHIN) == {
        "type": "execution.status"
    }
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


async def test_an_encrypted_layer_reads_what_is_published(redis_layer):
    layer = redis_layer(symmetric_encryption_keys=["a secret of the project"])
    channel = await member_of(layer, "executions")

    await asyncio.to_thread(
        broadcast.from_sync, "group_send", "executions", {"type": "executions.changed"}
    )

    received = await asyncio.wait_for(layer.receive(channel), ARRIVES_WITHIN)
    assert received == {"type": "executions.changed"}


async def test_pushes_use_no_event_loop(redis_layer, monkeypatch):
    layer = redis_layer()
    channel = await member_of(layer, "execution.x")

    def no_loop(*args, **kwargs):
        raise AssertionError("a push from sync code went through an event loop")

    monkeypatch.setattr(broadcast, "_push_loop", no_loop)
    monkeypatch.setattr(broadcast, "async_to_sync", no_loop)
    await asyncio.to_thread(
        broadcast.from_sync, "group_send", "execution.x", {"type": "execution.status"}
    )

    received = await asyncio.wait_for(layer.receive(channel), ARRIVES_WITHIN)
    assert received == {"type": "execution.status"}


def test_redis_down_fails_the_push_not_the_caller(redis_layer, redis_server, caplog):
    redis_layer()
    redis_server.stop()
    started = time.monotonic()

    with caplog.at_level(logging.WARNING, logger=broadcast.logger.name):
        for _ in range(3):
            broadcast.from_sync(
                "group_send", "execution.x", {"type": "execution.status"}
            )

    assert time.monotonic() - started < 3
    failures = [
        r for r in caplog.records if "group_send to execution.x failed" in r.message
    ]
    assert len(failures) == 1  # then throttled
    broadcast.quiet.recovered("layer")


async def test_a_host_the_sync_client_refuses_keeps_the_event_loop_path(
    redis_layer, monkeypatch, caplog
):
    import redis

    def refuse(*args, **kwargs):
        raise TypeError("an option redis-py's sync client does not take")

    monkeypatch.setattr(redis.Redis, "from_url", refuse)
    layer = redis_layer()
    channel = await member_of(layer, "execution.x")

    with caplog.at_level(logging.WARNING, logger=broadcast.logger.name):
        await asyncio.to_thread(
            broadcast.from_sync,
            "group_send",
            "execution.x",
            {"type": "execution.status"},
        )

    received = await asyncio.wait_for(layer.receive(channel), ARRIVES_WITHIN)
    assert received == {"type": "execution.status"}
    assert "no sync publisher for this layer" in caplog.text


def test_a_layer_on_sentinel_keeps_the_event_loop_path():
    class Sentinel:
        pass

    assert broadcast._SyncPublisher.for_layer(Sentinel()) is None
