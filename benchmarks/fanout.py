"""Scenario 5: one execution's events to 1, 50 and 200 websocket watchers.

Ours: a running execution's step events (a step ticking every 10 ms in its
execution process, coalesced by the engine to one event per
EXECUTIONS_PROGRESS_INTERVAL and sent over the socket pair to its supervisor:
daphne in-memory, the worker over Redis) go to N watchers of
`/ws/executions/<id>/`. For each event, the time from the supervisor's
`group_send` (the probe reports it, PEACE_BENCH_SENDS=1) to the moment the
last of the N watchers has it. The hop from the execution process to the
supervisor comes before that `group_send`: it is not in these figures (nor
in the floor's).

The same for 50 in-memory with the consumers' once-a-second session re-check
turned off in this daphne only (an experiment: what that check costs).

Floor, bare Channels fan-out in the same daphne and layer: a bare consumer
stamps a message and `group_send`s it to a group that N bare consumers joined,
each forwarding it to its socket: the same payload (a step event) at the same
rate, while the same kind of execution runs unwatched (the same load). Same
points: from `group_send` to the last watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid

from benchmarks.probe import NO_RECHECK, step_key
from benchmarks.stack import Context, Site, site

SETTLE = 0.5
RECHECK_OFF = "in-memory, session re-check off (experiment)"
INTERVAL = 0.05


class Watchers:
    """N websocket clients that timestamp every message they receive."""

    def __init__(self) -> None:
        self.sockets = []
        self.received: list[list[tuple[float, str]]] = []
        self.readers = []

    async def open(self, connect, count: int, skip_first: bool) -> None:
        gate = asyncio.Semaphore(10)

        async def one() -> None:
            async with gate:
                socket = await connect()
                if skip_first:
                    await socket.recv()
            log: list[tuple[float, str]] = []
            self.sockets.append(socket)
            self.received.append(log)
            self.readers.append(asyncio.ensure_future(self._read(socket, log)))

        await asyncio.gather(*(one() for _ in range(count)))

    @staticmethod
    async def _read(socket, log) -> None:
        with contextlib.suppress(Exception):
            async for raw in socket:
                log.append((time.time(), raw))

    async def close(self) -> None:
        await asyncio.gather(
            *(socket.close() for socket in self.sockets), return_exceptions=True
        )
        await asyncio.gather(*self.readers, return_exceptions=True)

    def arrivals(self) -> list[dict[str, float]]:
        """Per watcher: event key → when it arrived."""
        result = []
        for log in self.received:
            seen = {}
            for received, raw in log:
                message = json.loads(raw)
                if message.get("type") == "step":
                    seen.setdefault(_key(message), received)
            result.append(seen)
        return result


def _key(message: dict) -> str:
    if "sent" in message:
        return str(message["step"]["progress"]["done"])
    return step_key(message["step"])


def last_watcher(
    sent: list[tuple[str, float]], arrivals: list[dict[str, float]]
) -> tuple[list[float], int]:
    """For each event sent, ms until the last watcher had it; and how many
    events some watcher never got."""
    latencies, missing = [], 0
    for key, at in sent:
        times = [seen.get(key) for seen in arrivals]
        if any(t is None for t in times):
            missing += 1
            continue
        latencies.append((max(times) - at) * 1000)
    return latencies, missing


async def ours(server: Site, count: int, seconds: float) -> tuple[list[float], int]:
    key = await server.start_joined()
    watchers = Watchers()
    await watchers.open(lambda: server.websocket(_watch_path(key)), count, True)
    await asyncio.sleep(SETTLE)
    begin = time.time()
    await asyncio.sleep(seconds)
    end = time.time()
    await asyncio.sleep(SETTLE)
    await server.stop(key)
    await watchers.close()
    sent = [
        (report["event"], report["t"])
        for report in server.collector.all("sent", key)
        if begin <= report["t"] <= end
    ]
    return last_watcher(sent, watchers.arrivals())


def _watch_path(key: str) -> str:
    return f"/ws/executions/{uuid.UUID(key)}/"


async def bare(
    server: Site, count: int, seconds: float, step: dict
) -> tuple[list[float], int]:
    watchers = Watchers()
    await watchers.open(lambda: server.websocket("/ws/bench/watch/"), count, False)
    sender = await server.websocket("/ws/bench/send/")
    await asyncio.sleep(SETTLE)
    deadline = time.monotonic() + seconds
    number = 0
    while time.monotonic() < deadline:
        number += 1
        payload = copy.deepcopy(step)
        payload["progress"]["done"] = number
        await sender.send(json.dumps({"step": payload}))
        await asyncio.sleep(INTERVAL)
    await asyncio.sleep(SETTLE)
    await sender.close()
    await watchers.close()
    arrivals = watchers.arrivals()
    stamps = {}
    for log in watchers.received:
        for _, raw in log:
            message = json.loads(raw)
            stamps.setdefault(str(message["step"]["progress"]["done"]), message["sent"])
    sent = [(str(n), stamps[str(n)]) for n in range(1, number + 1) if str(n) in stamps]
    missing = number - len(sent)
    latencies, lost = last_watcher(sent, arrivals)
    return latencies, missing + lost


async def sample_step(server: Site) -> dict:
    """A real step event's payload, for the bare fan-out to carry."""
    key = await server.start_joined()
    socket = await server.websocket(_watch_path(key))
    await socket.recv()
    while True:
        message = json.loads(await socket.recv())
        if message.get("type") == "step":
            break
    await socket.close()
    await server.stop(key)
    return message["step"]


async def measure(
    context: Context, name: str, counts: tuple[int, ...], seconds: float, **options
) -> tuple[list, dict, dict]:
    rows, floors, missing = [], {}, {}
    async with site(context, name, sends=True, **options) as server:
        step = await sample_step(server)
        for count in counts:
            label = f"{name}: bare Channels → last of {count} (floor)"
            # The same execution runs meanwhile, unwatched: the floor carries
            # the same load, and only the fan-out path differs.
            background = await server.start_joined()
            latencies, lost = await bare(server, count, seconds, step)
            await server.stop(background)
            rows.append((label, latencies))
            missing[label] = lost
            ours_label = f"{name}: ours → last of {count}"
            latencies, lost = await ours(server, count, seconds)
            rows.append((ours_label, latencies))
            missing[ours_label] = lost
            floors[ours_label] = label
    return rows, floors, missing


async def run(context: Context) -> None:
    seconds = 2.0 if context.quick else 10.0
    counts = (1, 50) if context.quick else (1, 50, 200)
    rows, floors, missing = await measure(context, "in-memory", counts, seconds)
    more = await measure(context, "Redis", (50,), seconds, redis=True, workers=1)
    # Each watcher's socket re-validates its session at most once a second
    # before it forwards an event (two ORM calls through the one thread
    # Django's sync code shares); the bare floor does not. Without it, ours
    # is the runtime's path alone.
    experiment = await measure(
        context,
        RECHECK_OFF,
        (50,),
        seconds,
        extra_env={NO_RECHECK: "1"},
    )
    for found in (more, experiment):
        rows += found[0]
        floors.update(found[1])
        missing.update(found[2])
    context.results["fanout"] = {"rows": rows, "floors": floors, "missing": missing}
