"""Core vs pub/sub Redis channel layer, measured for what we use them for.

    .venv/bin/python -m benchmarks.layers [--samples 300]

1. Interrupt push: `group_send` in one process → `receive` in another (the
   supervisor's control channel), p50/p99 in ms, against the in-memory layer in
   one process as the floor.
2. Worker queue semantics: a run request sent while no worker listens yet,
   then two workers start: how many requests are received, and by how many
   workers each (must be exactly one each, none lost).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time

from benchmarks.support import redis_server, table

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def make_layer(kind: str, url: str):
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    if kind == "core":
        return RedisChannelLayer(hosts=[{"address": url, "socket_timeout": 10}])
    return RedisPubSubChannelLayer(hosts=[url])


def _receiver(kind: str, url: str, ready, samples: int, results) -> None:
    async def main() -> None:
        layer = make_layer(kind, url)
        channel = await layer.new_channel()
        await layer.group_add("bench-control", channel)
        ready.set()
        latencies = []
        for _ in range(samples):
            message = await layer.receive(channel)
            latencies.append((time.time() - message["sent"]) * 1000)
        results.put(latencies)
        await layer.group_discard("bench-control", channel)

    asyncio.run(main())


async def push_latency(kind: str, url: str, samples: int) -> list[float]:
    ready = multiprocessing.Event()
    results = multiprocessing.Queue()
    process = multiprocessing.Process(
        target=_receiver, args=(kind, url, ready, samples, results)
    )
    process.start()
    ready.wait(10)
    await asyncio.sleep(0.3)
    layer = make_layer(kind, url)
    for _ in range(samples):
        await layer.group_send("bench-control", {"type": "x", "sent": time.time()})
        await asyncio.sleep(0.005)
    latencies = results.get(timeout=30)
    process.join(10)
    return latencies


async def in_memory_floor(samples: int) -> list[float]:
    from channels.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("bench-control", channel)
    latencies = []
    for _ in range(samples):
        sent = time.perf_counter()
        await layer.group_send("bench-control", {"type": "x"})
        await layer.receive(channel)
        latencies.append((time.perf_counter() - sent) * 1000)
    return latencies


def _worker(kind: str, url: str, seen) -> None:
    async def main() -> None:
        layer = make_layer(kind, url)
        try:
            while True:
                message = await asyncio.wait_for(layer.receive("executions"), 2.0)
                seen.put(message["n"])
        except TimeoutError:
            pass

    asyncio.run(main())


async def queue_semantics(kind: str, url: str, requests: int = 20) -> tuple[int, int]:
    layer = make_layer(kind, url)
    for n in range(requests):  # no worker listens yet
        await layer.send("executions", {"type": "executions.run", "n": n})
    seen = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_worker, args=(kind, url, seen))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    await asyncio.sleep(0.5)
    for n in range(requests, 2 * requests):  # now two workers listen
        await layer.send("executions", {"type": "executions.run", "n": n})
    for worker in workers:
        worker.join(15)
    received = []
    while not seen.empty():
        received.append(seen.get())
    return len(set(received)), len(received)


async def run(context) -> None:
    """For `python -m benchmarks`: the same measurements, on its Redis."""
    samples = context.samples(300, 30)
    rows = [("in-memory group_send → receive (floor)", await in_memory_floor(samples))]
    for kind in LAYERS:
        rows.append(
            (
                f"{kind}: group_send → receive, other process",
                await push_latency(kind, context.redis_url, samples),
            )
        )
    lines = [
        "| layer | requests sent | distinct received | deliveries |",
        "|---|---|---|---|",
    ]
    for kind in LAYERS:
        distinct, total = await queue_semantics(kind, context.redis_url)
        lines.append(f"| {kind} | 40 (20 before any worker) | {distinct} | {total} |")
    context.results["layers"] = {
        "rows": rows,
        "floor": rows[0][0],
        "markdown": "\n".join(lines),
    }


async def main(samples: int) -> None:
    with redis_server() as url:
        rows = [
            ("in-memory group_send → receive (floor)", await in_memory_floor(samples))
        ]
        for kind in LAYERS:
            rows.append(
                (
                    f"{kind}: group_send → receive, other process",
                    await push_latency(kind, url, samples),
                )
            )
        print(table(rows, floor=rows[0][0]))
        print()
        print("| layer | requests sent | distinct received | deliveries |")
        print("|---|---|---|---|")
        for kind in LAYERS:
            distinct, total = await queue_semantics(kind, url)
            print(f"| {kind} | 40 (20 before any worker) | {distinct} | {total} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    asyncio.run(main(parser.parse_args().samples))
