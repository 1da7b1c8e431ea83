"""Scenarios 1 and 2: interrupt delivery and interrupt to stopped.

For each door — the JSON API, the websocket, the admin action, `manage.py
interrupt`, SIGINT to `manage.py execute` — and for each deployment — the
embedded default (in-memory layer, daphne supervises) and Redis (pub/sub
layer, a `runworker executions` process supervises):

- delivery: from the moment the door is used (just before the request is
  sent, the websocket frame written, the subprocess spawned, `os.kill`) to the
  moment the engine's in-memory `InterruptSignal` is set in the execution
  process (a listener the probe adds reports `time.time()` there): the push
  reaches the supervisor, which writes it to the execution process's socket
  pair. `manage.py execute` is its own execution process: SIGINT sets the
  signal in the same process;
- stopped: from the same moment to the moment a websocket watcher of the
  execution receives it as `interrupted`. The step is cooperative: it checks
  the interrupt every 10 ms.

Each sample is its own execution, alone on the site, interrupted 10-30 ms
after its supervisor joined its control group and its first step runs (a
random phase). The floor is a bare `group_send` → `receive` on the same
layer set-up.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from benchmarks import layers
from benchmarks.stack import LONG_STEP, Context, Ended, Site, desync, site
from benchmarks.support import PYTHON, ROOT

WARMUP = 3
FLOOR_MEMORY = "in-memory group_send → receive, one process (floor)"
FLOOR_PUBSUB = "pub/sub layer group_send → receive, other process (floor)"
CLI_FLOOR = "manage.py interrupt UNKNOWN-ID: spawn → exit"
IDLE_SERVER = "Redis: API → watcher sees, quiet server (no list page)"
HOP = "websocket door, of which: supervisor → execution process → signal"
#: From the door's push (the row written) to the signal: the way on, which
#: every door shares, without the request's way to its push.
PUSHED = "of which: its push → signal set"
PING = "HTTP GET round trip, bare ASGI on daphne (reference)"
#: The floor of the API door (issue 13): what it cannot do without, with
#: the neighbours each of its samples has (a run just started, watched).
API_FLOOR = (
    "bare Django POST, logged in, CSRF, one UPDATE, beside a run just started:"
    " its 202 back (floor)"
)
#: The same POST with no run beside it: what the neighbours cost it.
API_FLOOR_QUIET = "the floor's POST on a quiet server: its 202 back (reference)"
DJANGO_404 = "HTTP GET round trip, a Django 404 (reference)"
#: The same through Django's own ASGI handler (benchmarks/asgi.py's STOCK):
#: what the product's one-hop handler saves.
STOCK = "/bench/stock"
API_FLOOR_STOCK = (
    "the floor's POST on a quiet server through Django's own ASGI handler:"
    " its 202 back (reference)"
)
DJANGO_404_STOCK = (
    "HTTP GET round trip, a Django 404 through Django's own ASGI handler (reference)"
)


def ms(seconds: float) -> float:
    return seconds * 1000


@asynccontextmanager
async def listing(server: Site) -> AsyncIterator[None]:
    """Someone has the list page open: a socket on `/ws/executions/` that
    hears every execution's created / status / finished events."""
    socket = await server.websocket("/ws/executions/")

    async def drain() -> None:
        async for _ in socket:
            pass

    reader = asyncio.ensure_future(drain())
    try:
        yield
    finally:
        await socket.close()
        await asyncio.gather(reader, return_exceptions=True)


async def until_interrupted(watcher) -> float:
    """When the watcher receives the execution as `interrupted`."""
    async for raw in watcher:
        received = time.time()
        message = json.loads(raw)
        execution = message.get("execution") or {}
        if execution.get("status") == "interrupted":
            return received
    raise RuntimeError("the watcher's socket closed before `interrupted`")


async def door_api(site: Site, key: str, watcher) -> tuple[float, float | None]:
    return await site.interrupt_api(key)


async def door_websocket(site: Site, key: str, watcher) -> tuple[float, float | None]:
    sent = time.time()
    await watcher.send(json.dumps({"type": "interrupt"}))
    return sent, None


async def door_admin(site: Site, key: str, watcher) -> tuple[float, float | None]:
    def call() -> tuple[float, float]:
        sent = time.time()
        status, _ = site.http.post_form(
            "/admin/executions/execution/",
            {
                "action": "interrupt_selected",
                "_selected_action": str(uuid.UUID(key)),
                "index": "0",
                "select_across": "0",
            },
        )
        if status != 302:
            raise RuntimeError(f"admin action answered {status}")
        return sent, time.time()

    return await asyncio.to_thread(call)


async def door_cli(site: Site, key: str, watcher) -> tuple[float, float | None]:
    sent = time.time()
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "manage.py",
        "interrupt",
        str(uuid.UUID(key)),
        cwd=ROOT,
        env=site.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    code = await process.wait()
    if code == 1:  # not running: the run had already ended
        raise Ended(f"execution {key} is not running")
    if code != 0:
        raise RuntimeError(f"manage.py interrupt exited {code}")
    return sent, time.time()


DOORS = {
    "API POST": door_api,
    "websocket message": door_websocket,
    "admin action": door_admin,
    "manage.py interrupt": door_cli,
}


async def one(site: Site, door) -> dict[str, float] | None:
    """One sample; None when the run ended before the door was used (the
    runtime stopped it by itself: `stack.unrequested` counts those)."""
    key = await site.start_joined()
    watcher = await site.watch(key)
    seen = asyncio.ensure_future(until_interrupted(watcher))
    await desync()
    try:
        sent, replied = await door(site, key, watcher)
    except Ended:
        sent = None
    signalled = await site.wait("signal", key) if sent is not None else None
    if signalled is None or signalled["t"] < sent:
        seen.cancel()
        await site.wait("done", key)
        await watcher.close()
        return None
    seen_at = await asyncio.wait_for(seen, 60)
    await site.wait("done", key)
    await watcher.close()
    result = {"delivery": ms(signalled["t"] - sent), "stopped": ms(seen_at - sent)}
    result["signal → seen"] = ms(seen_at - signalled["t"])
    relayed = site.collector.all("relayed", key)
    if relayed:
        result["hop"] = ms(signalled["t"] - relayed[0]["t"])
    pushed = [mark for mark in site.collector.all("push", key) if mark["t"] >= sent]
    if pushed:
        result["push"] = ms(signalled["t"] - pushed[0]["t"])
    # The way from the signal to the watcher, where the probes see it.
    marks = [("signal", signalled["t"])]
    for kind in ("ran", "exited", "final"):
        found = site.collector.all(kind, key)
        if found:
            marks.append((kind, found[0]["t"]))
    marks.append(("seen", seen_at))
    for (before, at), (after, then) in zip(marks, marks[1:], strict=False):
        result[f"{before} → {after}"] = ms(then - at)
    if replied is not None:
        result["reply"] = ms(replied - sent)
    return result


async def measure(site: Site, door, samples: int) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {}
    index = 0
    while index < samples + WARMUP:
        result = await one(site, door)
        if result is None:
            continue
        index += 1
        if index <= WARMUP:
            continue
        for name, value in result.items():
            series.setdefault(name, []).append(value)
    return series


STAGES = {
    "signal → ran": "engine's run over (in the execution process)",
    "ran → exited": "execution process gone (seen by the supervisor)",
    "exited → final": "row final (the supervisor's write)",
    "final → seen": "watcher sees `finished`",
}


def stages(prefix: str, series: dict[str, list[float]]) -> list:
    """The signal → watcher way split where the probes see it."""
    return [
        (f"{prefix}: of which, {label}", series[name])
        for name, label in STAGES.items()
        if series.get(name)
    ]


async def cli_floor(site: Site, samples: int) -> list[float]:
    """What spawning `manage.py interrupt` costs before it can do anything:
    Python, Django set-up, one query for an unknown ID, exit."""
    latencies = []
    for _ in range(samples):
        started = time.time()
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            "manage.py",
            "interrupt",
            str(uuid.uuid4()),
            cwd=ROOT,
            env=site.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await process.wait()
        latencies.append(ms(time.time() - started))
    return latencies


async def update_floor(
    site: Site, samples: int, prefix: str = "", *, beside: bool = True
) -> list[float]:
    """The API door's floor: the logged-in session's POST, with its CSRF
    token, to a view of the benchmark's own (`benchmarks/asgi.py`) that does
    one UPDATE of an execution's row; sent → its 202 back. `beside`: each
    POST is sent as a door's sample is (`one`), 10-30 ms into a run just
    started and watched, which is stopped after it; else back to back on a
    quiet server. Under `prefix` (STOCK: through Django's own ASGI
    handler)."""
    key = await site.start_joined()
    await site.stop(key)
    path = f"{prefix}/bench/update/{uuid.UUID(key)}/"

    def call() -> float:
        sent = time.time()
        status, body = site.http.post_json(path, {})
        replied = time.time()
        if status != 202 or body.get("updated") != 1:
            raise RuntimeError(f"the floor's POST answered {status} {body}")
        return ms(replied - sent)

    latencies = []
    for index in range(samples + WARMUP):
        if beside:
            neighbour = await site.start_joined()
            watcher = await site.watch(neighbour)
            await desync()
        latency = await asyncio.to_thread(call)
        if beside:
            await site.stop(neighbour)
            await watcher.close()
        if index >= WARMUP:
            latencies.append(latency)
    return latencies


async def round_trips(site: Site, path: str, samples: int) -> list[float]:
    """HTTP GET round trips over the session's keep-alive connection."""

    def call() -> list[float]:
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            site.http.request("GET", path)
            latencies.append(ms(time.perf_counter() - started))
        return latencies

    return await asyncio.to_thread(call)


async def sigint(site: Site, samples: int) -> dict[str, list[float]]:
    """Ctrl-C: SIGINT to a probed `manage.py execute` (its own supervisor
    and execution process)."""
    argv = [PYTHON, "-m", "benchmarks.harness", "execute", "demo.steps", "--json"]
    for name, value in LONG_STEP.items():
        argv += ["--param", f"{name}={value}"]
    series: dict[str, list[float]] = {"delivery": [], "exit": []}
    for index in range(samples + 1):
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=site.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        key = uuid.UUID((await process.stdout.readline()).decode().strip()).hex
        await site.wait("joined", key)
        await site.wait("running", key)
        await desync()
        sent = time.time()
        process.send_signal(signal.SIGINT)
        signalled = await site.wait("signal", key)
        await process.communicate()
        exited = time.time()
        if process.returncode != 130:
            raise RuntimeError(f"execute exited {process.returncode}, not 130")
        if index:
            series["delivery"].append(ms(signalled["t"] - sent))
            series["exit"].append(ms(exited - sent))
    return series


async def run(context: Context) -> None:
    samples = context.samples(200, 20)
    slow = context.samples(20, 4)
    memory_rows = [(FLOOR_MEMORY, await layers.in_memory_floor(samples))]
    stopped_rows = []
    async with site(context, "interrupts-inprocess") as server, listing(server):
        for name, door in DOORS.items():
            count = slow if door is door_cli else samples
            series = await measure(server, door, count)
            memory_rows.append((f"{name} → signal set", series["delivery"]))
            stopped_rows.append(
                (f"in-process: {name} → watcher sees", series["stopped"])
            )
            if door is door_api:
                # Right after the door it is the floor of, same neighbours.
                memory_rows.append((API_FLOOR, await update_floor(server, samples)))
                quiet = await update_floor(server, samples, beside=False)
                memory_rows.append((API_FLOOR_QUIET, quiet))
                stock = await update_floor(server, samples, STOCK, beside=False)
                memory_rows.append((API_FLOOR_STOCK, stock))
            if "reply" in series and door is not door_cli:
                memory_rows.append(
                    (f"{name}: its response back (reference)", series["reply"])
                )
            if door is door_api:
                stopped_rows.append(
                    (
                        "in-process: API: signal set → watcher sees",
                        series["signal → seen"],
                    )
                )
                stopped_rows += stages("in-process: API", series)
            if door is door_websocket and series.get("hop"):
                memory_rows.append((HOP, series["hop"]))
            if door is not door_cli and series.get("push"):
                memory_rows.append((f"{name}, {PUSHED}", series["push"]))
        memory_rows.append((CLI_FLOOR + " (reference)", await cli_floor(server, slow)))
        memory_rows.append((PING, await round_trips(server, "/bench/ping/", samples)))
        memory_rows.append(
            (DJANGO_404, await round_trips(server, "/bench/no-such-page/", samples))
        )
        memory_rows.append(
            (
                DJANGO_404_STOCK,
                await round_trips(server, f"{STOCK}/bench/no-such-page/", samples),
            )
        )
        ctrl_c = await sigint(server, slow)
        memory_rows.append(
            ("SIGINT to manage.py execute → signal set", ctrl_c["delivery"])
        )
        memory_rows.append(
            ("SIGINT to manage.py execute → exit 130 (reference)", ctrl_c["exit"])
        )
    context.results["interrupts_inprocess"] = {
        "rows": memory_rows,
        "floor": FLOOR_MEMORY,
    }

    redis_rows = [
        (FLOOR_PUBSUB, await layers.push_latency("pubsub", context.redis_url, samples))
    ]
    async with site(context, "interrupts-redis", redis=True, workers=1) as server:
        # Nothing subscribed in daphne: channels_redis's own pub/sub reader
        # then polls every 100 ms, which the first watcher of a quiet server
        # paid; the project's layer (executions/pubsub.py) waits instead.
        idle = await measure(server, door_api, context.samples(60, 5))
        stopped_rows.append((IDLE_SERVER, idle["stopped"]))
        async with listing(server):
            redis_rows += await doors_over_redis(server, samples, slow, stopped_rows)
        redis_rows.append((CLI_FLOOR + " (reference)", await cli_floor(server, slow)))
    context.results["interrupts_redis"] = {"rows": redis_rows, "floor": FLOOR_PUBSUB}
    context.results["stopped"] = {"rows": stopped_rows}


async def doors_over_redis(
    server: Site, samples: int, slow: int, stopped_rows: list
) -> list[tuple[str, list[float]]]:
    rows = []
    for name, door in DOORS.items():
        count = slow if door is door_cli else samples
        series = await measure(server, door, count)
        rows.append((f"{name} → signal set (worker)", series["delivery"]))
        if door is door_websocket and series.get("hop"):
            rows.append((HOP + " (worker)", series["hop"]))
        if door is not door_cli and series.get("push"):
            rows.append((f"{name}, {PUSHED} (worker)", series["push"]))
        stopped_rows.append((f"Redis: {name} → watcher sees", series["stopped"]))
        if door is door_api:
            stopped_rows.append(
                ("Redis: API: signal set → watcher sees", series["signal → seen"])
            )
            stopped_rows += stages("Redis: API", series)
    return rows
