"""Where an API request's time goes while CPU-heavy runs go (scenario 7's
first target, when it is missed).

    .venv/bin/python -m benchmarks.profile_api [--seconds 8] [--nice N]

`--nice N` runs the execution processes N below daphne's CPU priority
(EXECUTIONS_EXECUTION_NICE; the product's default when not given).

Starts daphne (the embedded default, probed as in the benchmarks) on a
throwaway database, starts three CPU-heavy `demo.steps` runs, and while a
client sends `GET /api/executions/` back to back, records daphne with py-spy
(`--idle`, all threads, raw collapsed stacks). Prints the request latency,
how each of daphne's threads' samples split (idle in select, or working,
and in what), and the kernel's run-queue wait of daphne's
threads per request. Writes the raw stacks to the scratch folder.

`make bench` profiles the same workload by itself when the target is missed
(benchmarks/profile_recipes.py, `runtime-api`); this tool adds the per-request
run-queue wait and the `--nice` experiment.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.profile_summary import classify
from benchmarks.support import Collector, summary

SPY = str(Path(sys.executable).with_name("py-spy"))


async def main(seconds: float, nice: int | None) -> None:
    from benchmarks.__main__ import prepare_django
    from benchmarks.interrupts import round_trips
    from benchmarks.runtime import API_LIST, CPU_HEAVY, HEAVY_RUNS, run_queue_wait
    from benchmarks.stack import Context, site

    scratch = Path(tempfile.mkdtemp(prefix="peace-profile-"))
    database_url = await asyncio.to_thread(prepare_django, scratch)
    collector = Collector()
    context = Context(scratch, collector, True, database_url)
    extra = {} if nice is None else {"EXECUTIONS_EXECUTION_NICE": str(nice)}
    async with site(context, "profile", extra_env=extra) as server:
        idle = await round_trips(server, API_LIST, 100)
        keys = [await server.start(CPU_HEAVY) for _ in range(HEAVY_RUNS)]
        for key in keys:
            await server.wait("running", key)
        await asyncio.sleep(1.0)
        raw = scratch / "daphne.collapsed"
        spy = subprocess.Popen(
            [SPY, "record", "--idle", "--threads", "--nonblocking"]
            + ["--format", "raw", "-r", "200", "-d", str(round(seconds))]
            + ["-p", str(server.daphne.pid), "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=(scratch / "py-spy.log").open("w"),
        )
        loaded, requests = [], 0
        waited = run_queue_wait(server.daphne.pid)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            loaded += await round_trips(server, API_LIST, 10)
            requests += 10
        waited = run_queue_wait(server.daphne.pid) - waited
        await asyncio.to_thread(spy.wait)
        for key in keys:
            await server.stop(key, force=True)
    collector.close()
    print(
        f"idle p50 {summary(idle)['p50']:.1f} ms; loaded p50 "
        f"{summary(loaded)['p50']:.1f} ms ({len(loaded)} requests)"
    )
    print(f"daphne run-queue wait: {waited * 1000 / requests:.2f} ms per request")
    # Per thread: the reactor's loop (MainThread) and the thread the sync
    # views and the ORM run in (asgiref's executor).
    counts: Counter[tuple[str, str]] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        head, _, rest = stack.partition(";")
        thread = head.partition(": ")[2] or head
        thread = "MainThread" if "MainThread" in thread else thread.split("_")[0]
        if not rest:
            continue
        counts[thread, classify(rest.split(";"))] += int(count)
        threads[thread] += int(count)
    for (thread, label), count in counts.most_common(14):
        share = 100 * count / threads[thread]
        print(f"{share:5.1f} % of {thread}'s samples: {label}")
    print(f"raw stacks: {raw}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_api")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--nice", type=int, default=None)
    options = parser.parse_args()
    asyncio.run(main(options.seconds, options.nice))
