"""Scenario 10: the terminal's start-up and exit (issue 13 item 5).

`manage.py execute demo.steps --param count=1 --param seconds=0 --json`,
the product's own `manage.py` as a user types it (no probe, no harness),
against `manage.py check` (Django's start-up and a command that does nearly
nothing: the floor), N runs each, alternating so both see the same machine:

- start-up: spawn → the first line on stdout (execute: the execution's ID;
  check: its one line, printed once the checks ran);
- exit: execute: the last step's `finished_at` (from the final snapshot the
  command prints) → the process gone; check: its line → the process gone.

Then `python -X importtime` of each (IMPORT_RUNS runs, each module's median
self time): the modules `execute` imports that `check` does not, by top-level
package and by module, to say what the terminal adds to the floor.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from collections import defaultdict
from datetime import datetime

from benchmarks.interrupts import ms
from benchmarks.stack import Context
from benchmarks.support import PYTHON, ROOT

EXECUTE = [
    "execute",
    "demo.steps",
    "--param",
    "count=1",
    "--param",
    "seconds=0",
    "--json",
]
CHECK = ["check"]
EXECUTE_START = "manage.py execute: spawn → execution ID printed"
CHECK_START = "manage.py check: spawn → its output line (floor)"
EXECUTE_EXIT = "manage.py execute: last step done → process exit"
CHECK_EXIT = "manage.py check: its output line → process exit (floor)"
EXECUTE_TOTAL = "manage.py execute: spawn → exit"
CHECK_TOTAL = "manage.py check: spawn → exit (floor)"
IMPORT_RUNS = 3
TOP = 12


def _spawn(env: dict, args: list[str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, *extra, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def timed(env: dict, args: list[str]) -> dict[str, float]:
    """One run: spawn → first line, (last step | first line) → exit, in s
    since the epoch; for execute, the last step's finished_at."""
    spawned = time.time()
    process = _spawn(env, args)
    first = process.stdout.readline()
    printed = time.time()
    rest = process.stdout.read()
    process.wait()
    exited = time.time()
    if process.returncode != 0:
        error = process.stderr.read()
        raise RuntimeError(f"{args}: exit {process.returncode}: {error}")
    process.stderr.close()
    found = {"spawned": spawned, "printed": printed, "exited": exited}
    if args is EXECUTE:
        snapshot = json.loads(rest)
        found["id"] = first.strip()
        found["last_step"] = max(
            datetime.fromisoformat(step["finished_at"]).timestamp()
            for step in snapshot["steps"]
        )
    return found


def measure(env: dict, runs: int) -> dict[str, list[float]]:
    series: dict[str, list[float]] = defaultdict(list)
    for index in range(runs + 1):  # the first of each warms the disk cache
        for args in (CHECK, EXECUTE):
            found = timed(env, args)
            if not index:
                continue
            if args is CHECK:
                series[CHECK_START].append(ms(found["printed"] - found["spawned"]))
                series[CHECK_EXIT].append(ms(found["exited"] - found["printed"]))
                series[CHECK_TOTAL].append(ms(found["exited"] - found["spawned"]))
            else:
                series[EXECUTE_START].append(ms(found["printed"] - found["spawned"]))
                series[EXECUTE_EXIT].append(ms(found["exited"] - found["last_step"]))
                series[EXECUTE_TOTAL].append(ms(found["exited"] - found["spawned"]))
    return dict(series)


def importtime(env: dict, args: list[str]) -> dict[str, tuple[float, float]]:
    """{module: (self µs, cumulative µs)}, medians over IMPORT_RUNS runs."""
    seen: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for _ in range(IMPORT_RUNS):
        process = _spawn(env, args, "-X", "importtime")
        _, err = process.communicate()
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, total, name = line.removeprefix("import time:").split("|", 2)
            seen[name.strip()].append((int(own), int(total)))
    return {
        name: (
            statistics.median(own for own, _ in times),
            statistics.median(total for _, total in times),
        )
        for name, times in seen.items()
    }


def added(execute: dict, check: dict) -> dict:
    """What execute imports beyond check: the total self time, by top-level
    package, and the TOP modules by cumulative time (ms)."""
    extra = {name: times for name, times in execute.items() if name not in check}
    packages: dict[str, float] = defaultdict(float)
    for name, (own, _) in extra.items():
        packages[name.split(".")[0]] += own / 1000
    return {
        "modules": len(extra),
        "self_ms": sum(own for own, _ in extra.values()) / 1000,
        "execute_self_ms": sum(own for own, _ in execute.values()) / 1000,
        "check_self_ms": sum(own for own, _ in check.values()) / 1000,
        "packages": sorted(packages.items(), key=lambda kv: -kv[1])[:TOP],
        "cumulative": sorted(
            ((name, total / 1000) for name, (_, total) in extra.items()),
            key=lambda kv: -kv[1],
        )[:TOP],
    }


async def run(context: Context) -> None:
    env = context.env()
    runs = context.samples(15, 5)
    series = await asyncio.to_thread(measure, env, runs)
    execute = await asyncio.to_thread(importtime, env, EXECUTE)
    check = await asyncio.to_thread(importtime, env, CHECK)
    order = (
        CHECK_START,
        EXECUTE_START,
        CHECK_EXIT,
        EXECUTE_EXIT,
        CHECK_TOTAL,
        EXECUTE_TOTAL,
    )
    context.results["terminal"] = {
        "rows": [(name, series[name]) for name in order],
        "floors": {
            EXECUTE_START: CHECK_START,
            EXECUTE_EXIT: CHECK_EXIT,
            EXECUTE_TOTAL: CHECK_TOTAL,
        },
        "imports": added(execute, check),
        "runs": runs,
    }


def _median(section: dict, name: str) -> float | None:
    samples = dict(section["rows"]).get(name)
    return statistics.median(samples) if samples else None


def targets(section: dict) -> list[tuple[str, str, str, bool | None]]:
    found = []
    for name, floor in section["floors"].items():
        ours, base = _median(section, name), _median(section, floor)
        if ours is None or base is None:
            continue
        found.append(
            (
                f"terminal: {name.removeprefix('manage.py execute: ')}, median "
                f"of {section['runs']}",
                f"{ours:.0f} ms vs {base:.0f} ms for `check` (+{ours - base:.0f} ms,"
                f" {ours / base:.2f}×)",
                "close to the floor (no number set)",
                None,
            )
        )
    return found


def section_markdown(section: dict) -> str:
    from benchmarks.support import table

    imports = section["imports"]
    packages = ", ".join(f"{name} {spent:.1f}" for name, spent in imports["packages"])
    modules = ", ".join(
        f"`{name}` {spent:.1f}" for name, spent in imports["cumulative"]
    )
    return (
        table(section["rows"], floors=section["floors"])
        + "\n\n"
        + f"`python -X importtime` (median of {IMPORT_RUNS} runs): `execute` "
        f"imports {imports['modules']} modules `check` does not, "
        f"{imports['self_ms']:.0f} ms of their own import time (all modules: "
        f"{imports['execute_self_ms']:.0f} ms for execute, "
        f"{imports['check_self_ms']:.0f} ms for check). By top-level package "
        f"(ms, self time): {packages}. Largest by cumulative time (ms, "
        f"children included): {modules}."
    )
