"""Scenario 8: our engines side by side, next to Celery and RQ (issue 13).

For each way the product can supervise an execution
(`EXECUTIONS_RUNNER=inprocess|worker|celery|tasks`, docs/scale-out.md), on
the same machine and Redis, with the same cooperative step (checks its
interrupt every 10 ms):

- start: API POST (just before it is written) → the first step running in
  the execution process (the engine's own `started_at`, from the probe);
- interrupt, graceful: the API's `POST .../interrupt/`, and
  `services.request_interrupt()` from a long-lived Python client
  (`benchmarks/client.py`, as scenario 3 does), each 10–30 ms after the
  first step runs (as every scenario here), and the API door again
  LATE_SECONDS into the run; each → the supervisor's relay to the execution
  process, → the execution process's signal set (the probe's listener) and
  → the row terminal (the supervisor's probe, once its final write is done).
  Over Redis the execution process is in its control group too
  (executions/runtime/control.py): where it heard the request before the
  supervisor relayed it, the relay row has no sample for that run, and the
  report says how often that was.

The engines' workers are the product's own: `runworker executions`;
`celery -A peace_site worker` (prefork, a pool of one, Redis broker) with
the probes put in its pool processes (`benchmarks/engine_celery.py`);
django-tasks-db's `db_worker --interval TASKS_INTERVAL`. The in-process
engine has no client door: its layer is in daphne's memory, so another
process's request would wait for the supervisor's 0.5 s poll.

Beside them, the peers of scenario 3, from its own functions (or its
figures, when it ran first in this run): Celery `apply_async` → task start,
RQ `enqueue` → job start, Celery `revoke(terminate=True)` → SIGTERM in the
task and → its pool process gone, RQ `send_stop_job_command` → the work
horse gone. Those stops are forced kills; ours are graceful.

PEACE_BENCH_ENGINES="tasks celery" measures only those engines (a knob for
trying one; the report names what ran).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from collections import defaultdict

from benchmarks.interrupts import WARMUP, ms
from benchmarks.stack import Context, Ended, Site, desync, site
from benchmarks.support import PYTHON, summary

ENGINES = ("in-process", "worker", "celery", "tasks")
#: db_worker's wait between looks at its queue when it is empty (its default: 1 s).
TASKS_INTERVAL = 0.1
START = "API POST → first step running"
API_SIGNAL = "API interrupt → signal set"
API_FINAL = "API interrupt → row terminal"
CLIENT_SIGNAL = "request_interrupt() in a process → signal set"
CLIENT_FINAL = "request_interrupt() in a process → row terminal"
API_RELAYED = "API interrupt, of which: → supervisor relays it"
CLIENT_RELAYED = "request_interrupt(), of which: → supervisor relays it"
SERIES = {
    "api": (API_SIGNAL, API_FINAL),
    "client": (CLIENT_SIGNAL, CLIENT_FINAL),
}
#: The same API door, the run well under way: channels_redis's own pub/sub
#: reader sleeps 0.1 s while nothing is subscribed, so on a loop whose layer
#: was new a push in the first ~0.1 s after the supervisor joined waited for
#: that sleep (executions/pubsub.py, whose reader does not). The two rows
#: show whether a run's first moments still differ.
LATE_SECONDS = 0.3
LATE_SIGNAL = f"API interrupt {LATE_SECONDS:g} s into the run → signal set"
LATE_FINAL = f"API interrupt {LATE_SECONDS:g} s into the run → row terminal"
LATE_RELAYED = (
    f"API interrupt {LATE_SECONDS:g} s into the run, of which: → supervisor relays it"
)
SERIES["late"] = (LATE_SIGNAL, LATE_FINAL)
RELAYED = {"api": API_RELAYED, "client": CLIENT_RELAYED, "late": LATE_RELAYED}
#: Per run, 1 where the execution process's own membership of the control
#: group set the signal before the supervisor relayed it, else 0: a share,
#: not a latency (no row of the tables).
DIRECT = {door: f"{door}: signal set before any relay" for door in SERIES}
ROW_ORDER = (START,) + tuple(
    name
    for door in ("api", "client", "late")
    for name in (SERIES[door][0], RELAYED[door], SERIES[door][1])
)
#: graphile-worker's published enqueue → start over PostgreSQL LISTEN/NOTIFY
#: (the figure issue 13 quotes; its early READMEs said ~2 ms): the mark for a
#: database queue; not measured here.
GRAPHILE_MS = 4.0


def label(engine: str, what: str) -> str:
    return f"{engine}: {what}"


def site_options(engine: str) -> dict:
    if engine == "in-process":
        return {}
    if engine == "worker":
        return {"redis": True, "workers": 1}
    return {"redis": True, "extra_env": {"EXECUTIONS_RUNNER": engine}}


def worker_argv(engine: str) -> list[str] | None:
    """The engine's own worker, if daphne does not supervise (nor runworker,
    which `site` starts)."""
    if engine == "celery":
        return (
            [PYTHON, "-m", "celery", "-A", "benchmarks.engine_celery", "worker"]
            + ["--pool=prefork", "--concurrency=1", "--loglevel=WARNING"]
            + ["--without-gossip", "--without-mingle", "--without-heartbeat"]
            + ["-n", "peace-bench-engine@127.0.0.1"]
        )
    if engine == "tasks":
        return [PYTHON, "-m", "benchmarks.harness", "db_worker"] + [
            "--interval",
            str(TASKS_INTERVAL),
            "--no-startup-delay",
            "--no-reload",
        ]
    return None


class ScriptClient:
    """`benchmarks/client.py`: one Python process that calls
    `services.request_interrupt` for each ID it is given."""

    def __init__(self, server: Site) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "benchmarks.client"],
            env=server.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, key: str) -> float:
        """The time the client called the service for `key`."""
        self.process.stdin.write(key + "\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


async def sample(
    server: Site, samples: int, doors: tuple[str, ...]
) -> dict[str, list[float]]:
    """`samples` runs per door, the doors taken in turn: each run started
    through the API, interrupted once its first step runs."""
    series: dict[str, list[float]] = defaultdict(list)
    client = ScriptClient(server) if "client" in doors else None
    try:
        index = 0
        while index < samples * len(doors) + WARMUP:
            door = doors[index % len(doors)]
            # Each start at a random phase of db_worker's wait, as a user's
            # would be. Timed off the last run's end, the starts had locked
            # onto its looks at the queue: 123 ms p50, a whole interval after
            # one, against 70 ms at random phases.
            await asyncio.sleep(random.uniform(0, TASKS_INTERVAL))
            key, posted, _ = await server.start_timed()
            await server.wait("joined", key)
            running = await server.wait("running", key)
            if door == "late":
                await asyncio.sleep(LATE_SECONDS)
            await desync()
            if door in ("api", "late"):
                try:
                    sent, _ = await server.interrupt_api(key)
                except Ended:
                    await server.wait("done", key)
                    continue
            else:
                sent = await asyncio.to_thread(client.ask, key)
            signalled = await server.wait("signal", key)
            final = await server.wait("final", key)
            await server.wait("done", key)
            # Before the row is final, or never (the process had stopped).
            relayed = server.collector.all("relayed", key)
            direct = not relayed or relayed[0]["t"] > signalled["t"]
            if signalled["t"] < sent:
                continue  # ended before it was asked (stack.unrequested)
            index += 1
            if index > WARMUP:
                signal_name, final_name = SERIES[door]
                series[START].append(ms(running["started"] - posted))
                series[signal_name].append(ms(signalled["t"] - sent))
                series[final_name].append(ms(final["t"] - sent))
                series[DIRECT[door]].append(float(direct))
                if not direct:
                    series[RELAYED[door]].append(ms(relayed[0]["t"] - sent))
    finally:
        if client is not None:
            client.close()
    return dict(series)


async def measure(
    context: Context,
    engine: str,
    samples: int,
    *,
    doors: tuple[str, ...] = ("api", "client", "late"),
    name: str = "",
) -> dict[str, list[float]]:
    """Start and interrupt latencies of one engine, its site and worker
    started for it and stopped after."""
    async with site(context, name or f"engines-{engine}", **site_options(engine)) as (
        server
    ):
        argv = worker_argv(engine)
        if argv:
            server.processes.start(f"engines-{engine}-worker", argv, server.env)
        # Warm up, and wait for the worker: its first run waits for it.
        key = await server.start()
        await server.wait("running", key, timeout=120)
        await server.stop(key)
        return await sample(server, samples, doors)


async def run(context: Context) -> None:
    from benchmarks import peers

    # 60 a door: eleven series of ours, ~4 minutes of a full run.
    samples = context.samples(60, 10)
    rows = []
    direct: dict[str, list[int]] = {}
    for engine in os.environ.get("PEACE_BENCH_ENGINES", "").split() or ENGINES:
        doors = ("api", "late") if engine == "in-process" else ("api", "client", "late")
        found = await measure(context, engine, samples, doors=doors)
        rows += [
            (label(engine, what), found[what]) for what in ROW_ORDER if what in found
        ]
        for door in doors:
            shares = found.get(DIRECT[door])
            if shares:
                direct[label(engine, door)] = [int(sum(shares)), len(shares)]
    earlier = dict(context.results.get("peers", {}).get("rows", []))
    earlier.update(context.results.get("starts", {}).get("rows", []))
    wanted = (
        peers.CELERY_START,
        peers.RQ_START,
        peers.CELERY_TERMINATE,
        peers.CELERY_GONE,
        peers.RQ_STOP,
    )
    if all(name in earlier for name in wanted):
        measured = dict(earlier)
        source = "scenario 3 of this run"
    else:
        found = await peers.measure_peers(context, samples, abort=False)
        measured = dict(found["stops"] + found["starts"])
        source = "measured here"
    rows += [(name, measured[name]) for name in wanted]
    context.results["engines"] = {
        "rows": rows,
        "floors": floors(peers),
        "peers_from": source,
        "tasks_interval": TASKS_INTERVAL,
        "direct": direct,
    }


def floors(peers) -> dict[str, str]:
    """Each of our rows against its peer: starts against Celery's start,
    signals against Celery's SIGTERM in the task, row terminal against its
    pool process gone."""
    found = {}
    for engine in ENGINES:
        found[label(engine, START)] = peers.CELERY_START
        for signal_name, final_name in SERIES.values():
            found[label(engine, signal_name)] = peers.CELERY_TERMINATE
            found[label(engine, final_name)] = peers.CELERY_GONE
    found[peers.RQ_START] = peers.CELERY_START
    found[peers.RQ_STOP] = peers.CELERY_GONE
    return found


def _p50(rows: dict, name: str) -> float | None:
    samples = rows.get(name)
    return summary(samples)["p50"] if samples else None


def targets(section: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, wanted, met) rows for the report's targets table;
    met is None for a mark that is no target."""
    from benchmarks import peers

    rows = dict(section["rows"])
    found = []
    celery_start = _p50(rows, peers.CELERY_START)
    for engine in ENGINES:
        start = _p50(rows, label(engine, START))
        if start is None:
            continue
        peer = f" (Celery apply_async {celery_start:.1f})" if celery_start else ""
        found.append(
            (
                f"{engine}: API POST → first step running, p50",
                f"{start:.1f} ms{peer}",
                "≤ 100 ms",
                start <= 100,
            )
        )
    tasks = _p50(rows, label("tasks", START))
    if tasks is not None:
        found.append(
            (
                "tasks (database queue): start vs graphile-worker's published "
                f"{GRAPHILE_MS:g} ms (LISTEN/NOTIFY; not measured here)",
                f"{tasks:.1f} ms with db_worker --interval "
                f"{section['tasks_interval']:g}",
                f"the mark: ≈ {GRAPHILE_MS:g} ms",
                None,
            )
        )
    kill = _p50(rows, peers.CELERY_TERMINATE)
    gone = _p50(rows, peers.CELERY_GONE)
    for engine in ENGINES:
        for door, (signal_name, final_name) in SERIES.items():
            signalled = _p50(rows, label(engine, signal_name))
            final = _p50(rows, label(engine, final_name))
            if signalled is None or kill is None or gone is None:
                continue
            found.append(
                (
                    f"{engine}: graceful {door} interrupt vs Celery forced kill, "
                    "p50 (signal; row terminal vs process gone)",
                    f"{signalled:.1f} vs {kill:.1f} ms; {final:.1f} vs {gone:.1f} ms",
                    "signal no slower (the target of scenario 3)",
                    signalled <= kill,
                )
            )
    return found


def markdown(section: dict) -> str:
    return (
        "Ratios: each start over Celery's `apply_async` → task start, each "
        "signal over Celery's `revoke(terminate=True)` → SIGTERM in the task, "
        "each row terminal (and RQ's stop) over that pool process gone. "
        f"Peers: {section['peers_from']}. db_worker --interval "
        f"{section['tasks_interval']:g} s (its default is 1 s). Ours are graceful "
        "(the step stops at its next 10 ms checkpoint), the peers' stops forced "
        "kills. graphile-worker publishes 4 ms enqueue → start over "
        "LISTEN/NOTIFY: the mark for a database queue, not measured here. "
        "Each start comes at a random phase of db_worker's wait. "
        f"The early and the {LATE_SECONDS:g} s rows would differ if a push in "
        "a run's first moments waited: channels_redis's own pub/sub reader "
        "sleeps 0.1 s while nothing is subscribed (45-60 ms p50 under Celery "
        "and Tasks, 2026-12-02 07:00); the project's layer "
        "(executions/pubsub.py) reads once it has a subscription."
        + _direct_note(section.get("direct", {}))
    )


def _direct_note(direct: dict[str, list[int]]) -> str:
    """How often the execution process's own place in the control group set
    the signal before the supervisor relayed it (those runs have no relay
    sample)."""
    shares = [
        f"{name} {heard} of {runs}" for name, (heard, runs) in direct.items() if heard
    ]
    if not shares:
        return ""
    return (
        " Set by the execution process's own membership of the control group "
        "before any relay (runtime/control.py; no relay sample for those "
        f"runs): {', '.join(shares)}."
    )


def section_markdown(section: dict) -> str:
    """The report's section: starts, then stops, each against its peer."""
    from benchmarks.support import table

    floor_of = section["floors"]
    rows = section["rows"]
    starts = [(n, s) for n, s in rows if START in n or "start" in n]
    stops = [(n, s) for n, s in rows if (n, s) not in starts]
    return (
        table(starts, floors=floor_of)
        + "\n\n"
        + table(stops, floors=floor_of)
        + "\n\n"
        + markdown(section)
    )
