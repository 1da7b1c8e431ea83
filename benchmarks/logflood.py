"""Scenario 9: a step flooding its log (issue 11).

The embedded default (daphne supervises, in-memory layer). One run of
`bench.log-flood` (benchmarks/bench_cmds.py: a sync step writing RATE lines
a second with `ctx.log.info`, in 10 ms batches, checking its interrupt after
each) is watched from a websocket (as a browser would: the log lines come to
it), while another run (`demo.steps`, a cooperative step ticking 100 times a
second: ≤ 20 progress events a second) is watched by a second websocket.
For SECONDS:

- event latency: each progress event of the other run, from the
  supervisor's hand-over to the layer (the probe's `sent`) to its watcher;
- CPU (% of one core) of the flooding run's execution process, of daphne
  (its supervisor and web server), and RSS of daphne at the end;
- then the flooding run is interrupted through the API: → its watcher sees
  `finished`, and where that time went, from the probes (API → signal set
  → the engine's run over → its process gone → the row final → seen);
- lines kept (its rows in the log table) and dropped (its row's
  `log_dropped`: the source's rate cap, EXECUTIONS_LOG_RATE / _BURST, and the
  per-execution limit), and log lines its watcher received.

The same again with the lines written through a `logging` logger (as a
library's would be: the step's capture handler formats each record), and
with the same step quiet (rate=0): the floor. Rounds alternate (quiet,
ctx.log, logging, quiet...) so all see the same neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
import statistics
import time
import uuid
from urllib.parse import urlparse

import psutil

from benchmarks.fanout import Watchers, last_watcher
from benchmarks.interrupts import ms
from benchmarks.stack import LONG_STEP, Context, Site, site

FLOOD = "bench.log-flood"
RATE = 100_000
#: The other run: one step of 100 ticks a second, for as long as needed.
WATCHED = {"count": 1, "seconds": 600, "ticks": 60000}
QUIET, FLOODING = "quiet (rate=0, floor)", f"flooding ({RATE:,} lines/s)"
FLOODING_LOGGING = f"flooding through logging ({RATE:,} lines/s)"
#: Each condition: the flooding step's params.
CONDITIONS = {
    QUIET: {"rate": 0},
    FLOODING: {"rate": RATE},
    FLOODING_LOGGING: {"rate": RATE, "via": "logging"},
}
EVENTS = "progress event of another run → its watcher"
FINISHED = "interrupt (API) → the run's watcher sees finished"
MIB = 1024 * 1024


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _log_counts(database_url: str, key: str) -> tuple[int, int]:
    """(lines kept, lines dropped) of one execution."""
    path = urlparse(database_url).path
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as connection:
        kept = connection.execute(
            "SELECT COUNT(*) FROM executions_logline WHERE execution_id = ?", (key,)
        ).fetchone()[0]
        dropped = connection.execute(
            "SELECT log_dropped FROM executions_execution WHERE id = ?", (key,)
        ).fetchone()[0]
    return kept, dropped


def _finished_at(received: list[tuple[float, str]]) -> tuple[float | None, int]:
    """When the watcher got `finished`, and how many log lines it got."""
    finished, lines = None, 0
    for at, raw in received:
        message = json.loads(raw)
        if message.get("type") == "log":
            lines += len(message.get("lines", ()))
        elif message.get("type") == "finished" and finished is None:
            finished = at
    return finished, lines


async def one_round(server: Site, params: dict, seconds: float) -> dict:
    flood = await server.start_joined({**params, "seconds": 3600}, FLOOD)
    flood_pid = server.collector.wait("running", flood)["pid"]
    watched = await server.start_joined(WATCHED)
    flood_watch, watch = Watchers(), Watchers()
    path = f"/ws/executions/{uuid.UUID(flood)}/"
    await flood_watch.open(lambda: server.websocket(path), 1, True)
    path = f"/ws/executions/{uuid.UUID(watched)}/"
    await watch.open(lambda: server.websocket(path), 1, True)
    await asyncio.sleep(1.0)  # past the burst: the cap's steady state
    daphne, child = psutil.Process(server.daphne.pid), psutil.Process(flood_pid)
    before = (_cpu(daphne), _cpu(child), time.monotonic())
    begin = time.time()
    await asyncio.sleep(seconds)
    end = time.time()
    after = (_cpu(daphne), _cpu(child), time.monotonic())
    rss = daphne.memory_info().rss / MIB
    sent, _ = await server.interrupt_api(flood)
    await server.wait("done", flood)
    await asyncio.sleep(0.3)  # the watcher's last frames
    await server.stop(watched)
    await flood_watch.close()
    await watch.close()
    events = [
        (report["event"], report["t"])
        for report in server.collector.all("sent", watched)
        if begin <= report["t"] <= end
    ]
    latencies, missing = last_watcher(events, watch.arrivals())
    finished, received = _finished_at(flood_watch.received[0])
    phases = _phases(server, flood, sent, finished)
    kept, dropped = _log_counts(server.context.database_url, flood)
    elapsed = after[2] - before[2]
    return {
        "events": latencies,
        "missing": missing,
        "finished": [ms(finished - sent)] if finished else [],
        "cpu_daphne": 100 * (after[0] - before[0]) / elapsed,
        "cpu_run": 100 * (after[1] - before[1]) / elapsed,
        "rss": rss,
        "kept": kept,
        "dropped": dropped,
        "received": received,
        "phases": phases,
    }


#: Where an interrupt's time goes on its way to the watcher, from the probes.
PHASES = {
    "signal": "API → signal set",
    "ran": "signal → the engine's run over",
    "exited": "→ its process gone",
    "final": "→ the row final",
    "seen": "→ the watcher sees finished",
}


def _phases(server: Site, key: str, sent: float, finished: float | None) -> dict:
    probed = ("signal", "ran", "exited", "final")
    marks = [sent] + [server.collector.wait(kind, key)["t"] for kind in probed]
    marks.append(finished if finished is not None else marks[-1])
    return {
        name: ms(b - a)
        for name, (a, b) in zip(PHASES, itertools.pairwise(marks), strict=True)
    }


async def run(context: Context) -> None:
    seconds = 3.0 if context.quick else 10.0
    rounds = context.samples(3, 1)
    found: dict[str, list[dict]] = {name: [] for name in CONDITIONS}
    async with site(context, "logflood", sends=True) as server:
        key = await server.start_joined(LONG_STEP)
        await server.stop(key)
        for _ in range(rounds):
            for name, params in CONDITIONS.items():
                found[name].append(await one_round(server, params, seconds))
        rate_cap = server.env.get("EXECUTIONS_LOG_RATE", "1000 (default)")
        burst = server.env.get("EXECUTIONS_LOG_BURST", "2000 (default)")
    rows, floors, facts = [], {}, {}
    for name, results in found.items():
        rows.append((f"{name}: {EVENTS}", [x for r in results for x in r["events"]]))
        rows.append(
            (f"{name}: {FINISHED}", [x for r in results for x in r["finished"]])
        )
        facts[name] = {
            key: sum(r[key] for r in results) / len(results)
            for key in ("cpu_daphne", "cpu_run", "rss", "kept", "dropped", "received")
        }
        facts[name]["missing"] = sum(r["missing"] for r in results)
        facts[name]["phases"] = {
            phase: statistics.median(r["phases"][phase] for r in results)
            for phase in PHASES
        }
        facts[name]["rss_max"] = max(r["rss"] for r in results)
    for what in (EVENTS, FINISHED):
        for name in (FLOODING, FLOODING_LOGGING):
            floors[f"{name}: {what}"] = f"{QUIET}: {what}"
    context.results["logflood"] = {
        "rows": rows,
        "floors": floors,
        "facts": facts,
        "seconds": seconds,
        "rounds": rounds,
        "rate": RATE,
        "cap": f"EXECUTIONS_LOG_RATE {rate_cap}, EXECUTIONS_LOG_BURST {burst}",
    }


def _p50_ratio(
    section: dict, what: str, name: str = FLOODING
) -> tuple[float, float, float] | None:
    from benchmarks.support import summary

    rows = dict(section["rows"])
    ours, base = rows.get(f"{name}: {what}"), rows.get(f"{QUIET}: {what}")
    if not ours or not base:
        return None
    ours_p50, base_p50 = summary(ours)["p50"], summary(base)["p50"]
    return ours_p50, base_p50, ours_p50 / base_p50


def targets(section: dict) -> list[tuple[str, str, str, bool | None]]:
    found = []
    for name, what in [
        (n, w) for n in (FLOODING, FLOODING_LOGGING) for w in (EVENTS, FINISHED)
    ]:
        ratio = _p50_ratio(section, what, name)
        if ratio:
            found.append(
                (
                    f"log flood, {name}: {what}, p50 logs / no logs",
                    f"{ratio[2]:.2f}× ({ratio[0]:.1f} vs {ratio[1]:.1f} ms)",
                    "≤ 1.2× (the log costs others nothing noticeable)",
                    ratio[2] <= 1.2,
                )
            )
    quiet = section["facts"][QUIET]
    for name in (FLOODING, FLOODING_LOGGING):
        flood = section["facts"].get(name)
        if flood is None:
            continue
        found.append(
            (
                f"log flood, {name}: CPU (execution process, daphne) and "
                "daphne's RSS, logs vs no logs",
                f"run {flood['cpu_run']:.0f} % vs {quiet['cpu_run']:.0f} %, daphne "
                f"{flood['cpu_daphne']:.0f} % vs {quiet['cpu_daphne']:.0f} % of a "
                f"core; RSS {flood['rss_max']:.0f} vs {quiet['rss_max']:.0f} MiB",
                "no number set",
                None,
            )
        )
    return found


def section_markdown(section: dict) -> str:
    from benchmarks.support import table

    lines = [
        table(section["rows"], floors=section["floors"]),
        "",
        "| per round (mean of "
        f"{section['rounds']}, {section['seconds']:g} s each) | execution "
        "process CPU (% of a core) | daphne CPU | daphne RSS (MiB, max) | lines "
        "kept | lines dropped | log lines to its watcher | events never seen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, fact in section["facts"].items():
        lines.append(
            f"| {name} | {fact['cpu_run']:.0f} | {fact['cpu_daphne']:.0f} | "
            f"{fact['rss_max']:.0f} | {fact['kept']:,.0f} | {fact['dropped']:,.0f} "
            f"| {fact['received']:,.0f} | {fact['missing']} |"
        )
    lines += [
        "",
        "| the interrupt's way, median of the rounds (ms) | "
        + " | ".join(PHASES.values())
        + " |",
        "|---" * (len(PHASES) + 1) + "|",
    ]
    for name, fact in section["facts"].items():
        if "phases" in fact:  # not in a run recorded before they were taken
            lines.append(
                f"| {name} | "
                + " | ".join(f"{fact['phases'][phase]:.1f}" for phase in PHASES)
                + " |"
            )
    lines += [
        "",
        f"The cap: {section['cap']}. Lines kept and dropped cover the whole "
        "run (the settle second and the interrupt included), CPU the measured "
        "window only.",
    ]
    return "\n".join(lines)
