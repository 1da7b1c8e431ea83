"""Scenario 7: the runtime — execution processes under the server (issue 9).

The embedded default (in-memory layer, daphne supervising), each figure a
ratio or a bound measured in this run:

- the API under CPU-heavy runs: `GET /api/executions/` round trips (the
  session's keep-alive connection) with three runs of `demo.steps`
  (count=1000, seconds=0, ticks=100000: every value inside the schema) going,
  against the same server idle, in alternating rounds (idle, loaded, ...,
  idle: this machine is shared, and what else runs weighs on both alike).
  The CPU of daphne itself and of its execution processes, and the time
  daphne's threads wait for a CPU (the kernel's schedstat), are measured
  alongside;
- start: from just before the API's POST is written to the moment the first
  step runs, as the execution process's engine stamps it (the step's
  `started_at`, reported by the probe); the POST's reply for reference.
  Celery's and RQ's own start latencies are in scenario 3 (peers);
- forced stop: from just before `POST .../interrupt/ {"force": true}` is
  written to the moment the row is terminal (the benchmark reads it every
  2 ms), for steps that never cooperate: `demo.steps` cooperative=false (an
  async step: cancelled), a sync step that never checks (`bench.block`:
  abandoned in its thread), and a sync step holding the GIL in one C call
  (`bench.hold-gil`: its process cannot run, so the supervisor's SIGTERM
  after EXECUTIONS_FORCE_GRACE ends it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from urllib.parse import urlparse

import psutil

from benchmarks.interrupts import WARMUP, ms, round_trips
from benchmarks.stack import LONG_STEP, Context, Ended, Site, desync, site

CPU_HEAVY = {"count": 1000, "seconds": 0, "ticks": 100000}
HEAVY_RUNS = 3
#: The three newest executions: in loaded rounds the three heavy runs, in idle
#: rounds the three that just ended (a first round runs them before any
#: measurement), so idle and loaded answers carry the same rows (1,000 steps
#: each, ~220 KB) and only the load differs.
API_LIST = "/api/executions/?limit=3"
IDLE = "GET /api/executions/?limit=3, server idle (floor)"
LOADED = f"GET /api/executions/?limit=3, {HEAVY_RUNS} CPU-heavy runs going"
#: The experiment: the runs at their server's own CPU priority, as they
#: would be without EXECUTIONS_EXECUTION_NICE (the product's default is 19).
UNNICED = {"EXECUTIONS_EXECUTION_NICE": "0"}
LOADED_NICE = (
    f"the same, {HEAVY_RUNS} CPU-heavy runs at the server's priority (experiment)"
)
IDLE_NICE = "the same, idle, for the priority experiment (floor)"
START = "API POST → first step running (engine's stamp)"
START_REPLY = "API POST → its 201 back (reference)"
FORCE_CASES = {
    "demo.steps cooperative=false (async step)": (
        "demo.steps",
        {**LONG_STEP, "cooperative": False},
    ),
    "bench.block (sync step, never checks)": ("bench.block", {"seconds": 600}),
    "bench.hold-gil (sync step, GIL held in C)": ("bench.hold-gil", {"seconds": 600}),
}
TERMINAL = ("succeeded", "failed", "interrupted", "lost")


def force_label(case: str) -> str:
    return f"force → row terminal: {case}"


def run_queue_wait(pid: int) -> float:
    """Seconds the threads of `pid` have spent runnable but waiting for a CPU
    (the kernel's schedstat), so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with (
            contextlib.suppress(OSError),
            open(f"/proc/{pid}/task/{task}/schedstat") as stat,
        ):
            total += int(stat.read().split()[1])
    return total / 1e9


async def timed_round_trips(server: Site, samples: int) -> tuple[list[float], float]:
    """GET round trips, and daphne's run-queue wait per request (ms)."""
    before = run_queue_wait(server.daphne.pid)
    latencies = await round_trips(server, API_LIST, samples)
    waited = run_queue_wait(server.daphne.pid) - before
    return latencies, ms(waited) / samples


def _tree_cpu(root: psutil.Process) -> dict[int, float]:
    """CPU seconds so far of `root` and each process under it."""
    found = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        found[process.pid] = times.user + times.system
    return found


async def cpu_split(root: psutil.Process, seconds: float) -> dict[str, float]:
    """% of one core over `seconds`: the server itself, and the processes
    under it (the forkserver and its execution processes)."""
    before, started = _tree_cpu(root), time.monotonic()
    await asyncio.sleep(seconds)
    after, elapsed = _tree_cpu(root), time.monotonic() - started
    server = after.get(root.pid, 0) - before.get(root.pid, 0)
    children = sum(
        used - before.get(pid, 0) for pid, used in after.items() if pid != root.pid
    )
    return {"server": 100 * server / elapsed, "children": 100 * children / elapsed}


async def api_under_load(server: Site, samples: int, rounds: int) -> dict:
    """Idle and loaded round trips in alternating rounds (idle, loaded, ...,
    idle), so that what else runs on this shared machine weighs on both
    alike. Each loaded round starts three CPU-heavy runs, lets them settle,
    measures, and forces them to stop; idle rounds have no execution."""
    root = psutil.Process(server.daphne.pid)
    per_round = max(1, samples // rounds)
    idle, loaded, idle_waits, loaded_waits = [], [], [], []
    idle_cpu = loaded_cpu = None
    sizes = {}
    keys = [await server.start(CPU_HEAVY) for _ in range(HEAVY_RUNS)]
    for key in keys:
        await server.stop(key, force=True)
    for _ in range(rounds):
        sizes.setdefault("idle", await answer_size(server))
        latencies, wait = await timed_round_trips(server, per_round)
        idle += latencies
        idle_waits.append(wait)
        if idle_cpu is None:
            idle_cpu = await cpu_split(root, 1.0)
        keys = []
        for _ in range(HEAVY_RUNS):
            key = await server.start(CPU_HEAVY)
            await server.wait("running", key)
            keys.append(key)
        await asyncio.sleep(1.0)
        if loaded_cpu is None:
            loaded_cpu = await cpu_split(root, 2.0)
        sizes.setdefault("loaded", await answer_size(server))
        latencies, wait = await timed_round_trips(server, per_round)
        loaded += latencies
        loaded_waits.append(wait)
        for key in keys:
            await server.stop(key, force=True)
        await asyncio.sleep(0.5)
    latencies, wait = await timed_round_trips(server, per_round)
    idle += latencies
    idle_waits.append(wait)
    return {
        "idle": idle,
        "loaded": loaded,
        "cpu_idle": idle_cpu,
        "cpu_loaded": loaded_cpu,
        "wait_idle": sum(idle_waits) / len(idle_waits),
        "wait_loaded": sum(loaded_waits) / len(loaded_waits),
        "sizes": sizes,
    }


async def answer_size(server: Site) -> int:
    _, body = await asyncio.to_thread(server.http.request, "GET", API_LIST)
    return len(body)


async def start_latency(server: Site, samples: int) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {"start": [], "reply": []}
    for index in range(samples + WARMUP):
        key, sent, replied = await server.start_timed(LONG_STEP)
        running = await server.wait("running", key)
        await server.wait("joined", key)
        await server.stop(key)
        if index >= WARMUP:
            series["start"].append(ms(running["started"] - sent))
            series["reply"].append(ms(replied - sent))
    return series


def _wait_terminal(database: str, key: str, timeout: float = 30) -> tuple[float, str]:
    """When the row turns terminal (read every 2 ms), and its status."""
    connection = sqlite3.connect(database, timeout=5)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT status FROM executions_execution WHERE id = ?", (key,)
            ).fetchone()
            if row and row[0] in TERMINAL:
                return time.time(), row[0]
            time.sleep(0.002)
    finally:
        connection.close()
    raise TimeoutError(f"execution {key} not terminal after {timeout} s")


async def forced(server: Site, cmd: str, params: dict, samples: int) -> dict:
    database = urlparse(server.context.database_url).path
    latencies, statuses = [], []
    for _ in range(samples):
        key, _, _ = await server.start_timed(params, cmd)
        await server.wait("joined", key)
        await server.wait("running", key)
        await asyncio.sleep(0.2)  # the step is well inside its blocking work
        await desync()
        try:
            sent, _ = await server.interrupt_api(key, force=True)
        except Ended:  # stopped by the runtime itself (stack.unrequested)
            await server.wait("done", key)
            continue
        ended, status = await asyncio.to_thread(_wait_terminal, database, key)
        await server.wait("done", key)
        latencies.append(ms(ended - sent))
        statuses.append(status)
    return {"latencies": latencies, "statuses": statuses}


async def run(context: Context) -> None:
    samples = context.samples(120, 40)
    rounds = context.samples(6, 2)
    rows = []
    async with site(context, "runtime") as server:
        # Warm up: the forkserver, the first fork, Django's caches.
        key = await server.start_joined()
        await server.stop(key)
        load = await api_under_load(server, samples, rounds)
        rows += [(IDLE, load["idle"]), (LOADED, load["loaded"])]
        started = await start_latency(server, context.samples(100, 15))
        rows += [(START, started["start"]), (START_REPLY, started["reply"])]
        statuses = {}
        for case, (cmd, params) in FORCE_CASES.items():
            count = context.samples(10 if "gil" in cmd else 30, 3)
            result = await forced(server, cmd, params, count)
            rows.append((force_label(case), result["latencies"]))
            statuses[case] = sorted(set(result["statuses"]))
        grace = float(server.env.get("EXECUTIONS_FORCE_GRACE", 2.0))
    # What the product's lower priority for its execution processes buys:
    # the same rounds with the runs at the server's own priority.
    async with site(context, "runtime-unniced", extra_env=UNNICED) as server:
        key = await server.start_joined()
        await server.stop(key)
        niced = await api_under_load(server, samples, rounds)
        rows += [(IDLE_NICE, niced["idle"]), (LOADED_NICE, niced["loaded"])]
    context.results["runtime"] = {
        "rows": rows,
        "floors": {LOADED: IDLE, LOADED_NICE: IDLE_NICE},
        "cpu": {"idle": load["cpu_idle"], "loaded": load["cpu_loaded"]},
        "cpu_nice": niced["cpu_loaded"],
        "sizes": load["sizes"],
        "wait": {
            "idle": load["wait_idle"],
            "loaded": load["wait_loaded"],
            "nice": niced["wait_loaded"],
        },
        "force_statuses": statuses,
        "force_grace": grace,
        "heavy": CPU_HEAVY,
    }


def markdown(section: dict) -> str:
    idle, loaded = section["cpu"]["idle"], section["cpu"]["loaded"]
    statuses = "; ".join(
        f"{case}: {', '.join(found)}"
        for case, found in section["force_statuses"].items()
    )
    wait = section.get("wait", {})
    nice = section.get("cpu_nice", {})
    waits = (
        f" Daphne's threads waited for a CPU (runnable, not running; the "
        f"kernel's schedstat) {wait['idle']:.2f} ms per request idle, "
        f"{wait['loaded']:.2f} ms with the runs going, {wait['nice']:.2f} ms "
        f"with them at the server's priority (daphne "
        f"{nice.get('server', 0):.0f} %, execution processes "
        f"{nice.get('children', 0):.0f} %)."
        if wait
        else ""
    )
    found = section.get("sizes", {})
    sizes = (
        f" Answers: {found['idle'] / 1024:.0f} KiB idle, "
        f"{found['loaded'] / 1024:.0f} KiB loaded."
        if {"idle", "loaded"} <= set(found)
        else ""
    )
    return (
        f"CPU (% of one core) while idle: daphne {idle['server']:.0f}, its "
        f"execution processes {idle['children']:.0f}; with the {HEAVY_RUNS} "
        f"CPU-heavy runs (`demo.steps` {section['heavy']}): daphne "
        f"{loaded['server']:.0f}, its execution processes "
        f"{loaded['children']:.0f} (2 cores). Forced rows ended as: {statuses}. "
        f"EXECUTIONS_FORCE_GRACE: {section['force_grace']:g} s." + waits + sizes
    )
