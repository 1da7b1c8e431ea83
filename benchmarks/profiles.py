"""The profiling phase: a py-spy profile for each target the run missed.

After the scenarios, each target `report.targets()` marks missed is matched
to a recipe (benchmarks/profile_recipes.py): that target's own workload, run
again for a few seconds on a site of its own, while py-spy records the
processes its time goes through (daphne, the worker, the client), found by
the PIDs the benchmark started them with. Targets that share a workload
share its profile; a missed target with no recipe is listed as such.

py-spy records `--idle --threads --nonblocking` (the process is not paused,
so the workload's own timing is not disturbed) in raw collapsed stacks, kept
in var/benchmarks/profiles/<full|partial>/; benchmarks/profile_summary.py
reads them, and the run's JSON keeps the summaries, so `--report-only`
redraws them.

A full run samples each process SECONDS (8 s), a `--quick` run QUICK_SECONDS
(3 s): quick runs profile too, briefly. `--no-profiles` skips the phase;
`--profile RECIPE...` takes those recipes whatever the targets say (alone,
without `--only`, it runs no scenario: just the profiles). The phase stops
starting recipes once BUDGET seconds are spent, and says which it left out.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks import profile_summary
from benchmarks.runtime import run_queue_wait
from benchmarks.support import OUTPUT_ROOT

SPY = str(Path(sys.executable).with_name("py-spy"))
RATE = 200
SECONDS = 8.0
QUICK_SECONDS = 3.0
#: The whole phase: no recipe starts after this many seconds.
BUDGET = 300.0
MISSED = "| **missed** |"


@dataclass(frozen=True)
class Target:
    """A process to record: its name in the report, its PID, and whether
    py-spy follows the processes under it (the forkserver, executions)."""

    name: str
    pid: int
    subprocesses: bool = False


class Window:
    """The seconds py-spy records: the workload runs while `open`."""

    def __init__(self, spies: list[subprocess.Popen]) -> None:
        self.spies = spies

    @property
    def open(self) -> bool:
        return any(spy.poll() is None for spy in self.spies)


@dataclass
class Sampler:
    """Takes the recipes' profiles into `folder`; what it took, in `taken`."""

    folder: Path
    seconds: float
    rate: int = RATE
    recipe: str = ""
    taken: list[dict] = field(default_factory=list)

    @asynccontextmanager
    async def window(
        self, targets: list[Target], *, part: str = "", seconds: float | None = None
    ) -> AsyncIterator[Window]:
        """py-spy on each target for `seconds` (the sampler's by default);
        the CPU each used and its wait for a CPU alongside."""
        seconds = seconds or self.seconds
        started = []
        for target in targets:
            stem = "-".join(filter(None, (self.recipe, part, slug(target.name))))
            raw = self.folder / f"{stem}.txt"
            argv = [SPY, "record", "--pid", str(target.pid), "--rate", str(self.rate)]
            argv += ["--duration", str(round(seconds)), "--idle", "--threads"]
            argv += ["--nonblocking", "--format", "raw", "--output", str(raw)]
            if target.subprocesses:
                argv.append("--subprocesses")
            with raw.with_suffix(".log").open("w") as log:
                spy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            started.append((target, raw, spy, Usage(target.pid)))
        try:
            yield Window([spy for _, _, spy, _ in started])
        finally:
            for target, raw, spy, usage in started:
                self.taken.append(
                    await self._finish(target, raw, spy, usage, seconds, part)
                )

    async def _finish(self, target, raw, spy, usage, seconds, part) -> dict:
        try:
            await asyncio.to_thread(spy.wait, seconds + 30)
        except subprocess.TimeoutExpired:
            spy.terminate()
            await asyncio.to_thread(spy.wait)
        found = {
            "recipe": self.recipe,
            "part": part,
            "name": target.name,
            "pid": target.pid,
            "subprocesses": target.subprocesses,
            "seconds": seconds,
            "rate": self.rate,
            "raw": str(raw.relative_to(OUTPUT_ROOT)),
            **usage.done(),
            "groups": profile_summary.summarise_file(raw, target.name),
        }
        log = raw.with_suffix(".log").read_text(errors="replace").strip()
        counted = re.search(r"Samples: (\d+) Errors: (\d+)", log)
        if counted:  # stacks py-spy could not read (a process coming or going)
            found["spy_errors"] = int(counted[2])
        if spy.returncode or not found["groups"]:
            found["error"] = (log.splitlines() or ["no output"])[-1][:200]
        return found


class Usage:
    """CPU of a process (and of those under it alive at the end) and its
    threads' wait for a CPU, from now to `done()`."""

    def __init__(self, pid: int) -> None:
        self.pid, self.started = pid, time.monotonic()
        self.before = self._cpu()
        self.waited = self._waited()

    def _cpu(self) -> dict[int, float]:
        found = {}
        try:
            root = psutil.Process(self.pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
        except psutil.Error:
            pass
        return found

    def _waited(self) -> float:
        try:
            return run_queue_wait(self.pid)
        except OSError:
            return 0.0

    def done(self) -> dict:
        elapsed = time.monotonic() - self.started
        after = self._cpu()
        if self.pid not in after:
            return {"cpu": None}
        children = sum(
            used - self.before.get(pid, 0)
            for pid, used in after.items()
            if pid != self.pid
        )
        return {
            "cpu": 100 * (after[self.pid] - self.before.get(self.pid, 0)) / elapsed,
            "cpu_children": 100 * children / elapsed,
            "run_queue_ms": 1000 * (self._waited() - self.waited) / elapsed,
        }


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0]).strip("-")


def missed(results: dict) -> list[str]:
    """The labels of the targets this run missed, in the report's order."""
    from benchmarks import report

    return [
        line.split(" | ")[0].removeprefix("| ")
        for line in report.targets(results).splitlines()
        if line.endswith(MISSED)
    ]


def plan(labels: list[str], forced: tuple[str, ...] = ()) -> tuple[list, list]:
    """([(recipe, its missed labels)] in order, [[label, why no recipe]])."""
    from benchmarks.profile_recipes import RECIPES, recipe_for, why_none

    chosen: dict[str, list[str]] = {name: [] for name in forced}
    alone = []
    for label in labels:
        recipe = recipe_for(label)
        if recipe is None:
            alone.append([label, why_none(label)])
        else:
            chosen.setdefault(recipe.name, []).append(label)
    return [(RECIPES[name], found) for name, found in chosen.items()], alone


async def run(context, *, partial: bool, forced: tuple[str, ...] = ()) -> None:
    """Profile the missed targets of `context.results` (and the `forced`
    recipes); the summaries go to `context.results["profiles"]`."""
    started = time.monotonic()
    labels = missed(context.results)
    recipes, alone = plan(labels, forced)
    folder = OUTPUT_ROOT / "var" / "benchmarks" / "profiles"
    folder /= "partial" if partial else "full"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sampler = Sampler(folder, QUICK_SECONDS if context.quick else SECONDS)
    profiles, skipped = [], []
    for recipe, targets in recipes:
        if time.monotonic() - started > BUDGET:
            skipped.append(recipe.name)
            continue
        print(f"   profile: {recipe.name}", flush=True)
        sampler.recipe, sampler.taken = recipe.name, []
        entry = {"recipe": recipe.name, "title": recipe.title, "targets": targets}
        began = time.monotonic()
        try:
            entry["workload"] = await recipe.workload(context, sampler, targets)
        except Exception as error:  # one recipe's failure loses only its profile
            traceback.print_exc()
            entry["workload"] = f"failed: {error!r}"
        entry["processes"] = sampler.taken
        entry["elapsed"] = time.monotonic() - began
        profiles.append(entry)
    context.results["profiles"] = {
        "profiles": profiles,
        "no_recipe": alone,
        "over_budget": skipped,
        "seconds": sampler.seconds,
        "elapsed": time.monotonic() - started,
    }


def markdown(results: dict) -> str:
    """The report's section: one summary per profile, then what has none."""
    section = results.get("profiles")
    if section is None:
        return ""
    lines = [
        "### Profiles of the targets missed",
        "",
        f"Each missed target's workload again, py-spy recording the processes "
        f"its time goes through ({section['seconds']:g} s a process at {RATE} Hz, "
        "`--idle --threads --nonblocking`; benchmarks/profiles.py). Idle: the "
        "leaf frame is a wait (select/epoll, a lock, a queue, a socket or pipe "
        "read). Busy samples go to the first category walking up from the "
        "leaf: the library doing the work before our module that called it. "
        "A thread waiting for the GIL or for a CPU can count as either. The "
        f"phase took {section['elapsed']:.0f} s.",
        "",
    ]
    if not section["profiles"] and not section["no_recipe"]:
        lines += ["No target was missed: nothing to profile.", ""]
    for profile in section["profiles"]:
        lines += [profile_summary.profile_markdown(profile), ""]
    for label, reason in section["no_recipe"]:
        lines.append(f"- Not profiled, {label}: {reason}.")
    for name in section["over_budget"]:
        lines.append(
            f"- Not profiled: recipe `{name}` (the phase's {BUDGET:.0f} s were spent)."
        )
    return "\n".join(lines) + "\n"
