"""Scenario 12: the runtime's periodic reads against a long history.

The table keeps every run ever made, and the runtime reads it every fraction
of a second: the embedded server's relay (`runtime.relay`, every
EXECUTIONS_RELAY_INTERVAL), an engine worker's poll of its queue
(`store.claim_next`, every EXECUTIONS_POLL_INTERVAL while idle) and the
reaper (`reaper.orphans`). Each must cost what the active rows cost, not
what the history does.

For each history size, a probe process (`python -m benchmarks.history
SIZE`, its own SQLite file, migrated) makes SIZE finished runs spread over
the last 30 days, half of them from a worker queue, plus the state of a busy
server: 20 runs going under this server, 5 under a terminal. It then times
each read READS times, as the runtime calls it. The empty history is the
floor; the target is a flat cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from benchmarks.interrupts import ms
from benchmarks.stack import Context
from benchmarks.support import PYTHON, ROOT

SIZES = (0, 10_000, 100_000)
QUICK_SIZES = (0, 10_000)
READS = 200
HERE = "server:bench-here"
RELAY = "relay pass: rows not supervised here, changed since"
POLL = "worker poll: the oldest queued row of its queue"
REAPER = "reaper: orphaned active rows"
#: At the largest history, a read may cost at most this × the empty table's.
FLAT = 1.5


def label(name: str, size: int) -> str:
    return f"{name}, {size:,} finished rows" + (" (floor)" if not size else "")


async def run(context: Context) -> None:
    sizes = QUICK_SIZES if context.quick else SIZES
    found = {}
    for size in sizes:
        found[size] = await asyncio.to_thread(_probe, context, size)
    # Sizes as strings: the raw results go through JSON (--report-only).
    context.results["history"] = {
        "sizes": [str(size) for size in sizes],
        "reads": {
            name: {str(size): found[size][name] for size in sizes}
            for name in found[sizes[0]]
        },
    }


def _probe(context: Context, size: int) -> dict[str, list[float]]:
    database = context.scratch / f"history-{size}.sqlite3"
    env = context.env(DATABASE_URL=f"sqlite:///{database}")
    result = subprocess.run(
        [PYTHON, "-m", "benchmarks.history", str(size)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"history probe {size}: {result.stderr}")
    return json.loads(result.stdout)


def targets(section: dict) -> list[tuple[str, str, str, bool | None]]:
    from benchmarks.support import summary

    largest = section["sizes"][-1]
    found = []
    for name, by_size in section["reads"].items():
        floor = summary(by_size["0"])["p50"]
        big = summary(by_size[largest])["p50"]
        found.append(
            (
                f"{name}, {int(largest):,} finished rows vs none, p50",
                f"{big:.2f} vs {floor:.2f} ms ({big / floor:.2f}×)",
                f"≤ {FLAT}× (flat)",
                big <= FLAT * floor,
            )
        )
    return found


def section_markdown(section: dict) -> str:
    from benchmarks.support import table

    rows, floors = [], {}
    for name, by_size in section["reads"].items():
        for size in section["sizes"]:
            rows.append((label(name, int(size)), by_size[size]))
            floors[label(name, int(size))] = label(name, 0)
    return table(rows, floors=floors) + (
        f"\n\nEach read {READS} times in a probe process of its own, as the "
        f"runtime calls it; 20 runs going under the server, 5 under a terminal."
    )


# -- the probe (python -m benchmarks.history SIZE) ----------------------------------


def _fill(size: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from executions.engine import StepState, StepStatus
    from executions.models import Execution, Source, Status

    steps = [
        StepState(id="step-1", title="Step 1", status=StepStatus.SUCCEEDED).to_dict()
    ]

    def row(**fields) -> Execution:
        return Execution(
            cmd="demo.steps",
            title="Demo",
            created_from=Source.API,
            steps=steps,
            **fields,
        )

    now = timezone.now()
    ended = (Status.SUCCEEDED, Status.INTERRUPTED, Status.FAILED)
    batch = []
    for number in range(size):
        created = now - timedelta(days=30) * (1 - number / size)
        batch.append(
            row(
                status=ended[number % 3],
                queue="workers" if number % 2 else "",
                supervisor="worker:gone" if number % 2 else "server:gone",
                created_at=created,
                started_at=created,
                finished_at=created + timedelta(seconds=5),
            )
        )
        if len(batch) == 5000:
            Execution.objects.bulk_create(batch)
            batch = []
    for supervisor, count in ((HERE, 20), ("cli:terminal", 5)):
        batch += [
            row(
                status=Status.RUNNING,
                supervisor=supervisor,
                started_at=now,
                heartbeat_at=now,
            )
            for _ in range(count)
        ]
    Execution.objects.bulk_create(batch)


async def _time_reads() -> dict[str, list[float]]:
    from django.utils import timezone

    from executions.runtime import reaper, relay, store

    seen: dict = {}
    since = timezone.now()
    reads = {
        RELAY: lambda: relay._changed_rows(HERE, since, seen),
        POLL: lambda: store.claim_next("workers", "worker:bench"),
        REAPER: lambda: store.runtime_database(reaper.orphans)(),
    }
    found: dict[str, list[float]] = {name: [] for name in reads}
    for _ in range(READS):
        for name, read in reads.items():
            started = time.perf_counter()
            await read()
            found[name].append(ms(time.perf_counter() - started))
    return found


def main(size: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    _fill(size)
    found = asyncio.run(_time_reads())
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")
    main(int(sys.argv[1]))
