"""Run every benchmark and write the report.

    python -m benchmarks            # the full run: docs/benchmarks.md + PNG
    python -m benchmarks --quick    # a smoke run, a couple of minutes
    python -m benchmarks --only interrupts peers   # into var/benchmarks/
    python -m benchmarks --report-only  # the report again, from the raw samples
    python -m benchmarks --no-profiles  # without the py-spy profiles of missed targets
    python -m benchmarks --profile crowd  # just that profile (benchmarks/profiles.py)

Everything it starts (redis-server, daphne, workers, a Celery and an RQ
worker) listens on 127.0.0.1 and is stopped by PID when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.support import (
    OUTPUT_ROOT,
    ROOT,
    Collector,
    machine_facts,
    redis_server,
)

#: Left out of the snapshot the benchmarks run from.
NOT_CODE = (".git", ".venv", "var", "tests", "docs", "__pycache__", "*.sqlite3*")
SNAPSHOT_PREFIX = "peace-bench-tree-"

SCENARIOS = (
    "interrupts",
    "peers",
    "engines",
    "progress",
    "fanout",
    "scale",
    "runtime",
    "layers",
    "crowd",
    "logflood",
    "terminal",
    "history",
)


def run_from_snapshot() -> None:
    """Re-run this command from a copy of the code, so that what is measured
    is the code as it was at the start even if the checkout changes under a
    ten-minute run (a shared working tree). Reports still go to the checkout.
    """
    tree = Path(tempfile.mkdtemp(prefix=SNAPSHOT_PREFIX)) / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*NOT_CODE))
    os.environ["PEACE_BENCH_OUTPUT"] = str(ROOT)
    os.chdir(tree)
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]])


def remove_snapshot() -> None:
    if ROOT != OUTPUT_ROOT and ROOT.parent.name.startswith(SNAPSHOT_PREFIX):
        shutil.rmtree(ROOT.parent, ignore_errors=True)


def prepare_django(scratch: Path) -> str:
    """A throwaway SQLite database, migrated, with the benchmark's user."""
    for key in list(os.environ):
        if key.startswith(("REDIS_URL", "EXECUTIONS_", "DATABASE_URL", "DJANGO_")):
            del os.environ[key]
    database_url = f"sqlite:///{scratch / 'bench.sqlite3'}"
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "peace_site.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from benchmarks.stack import PASSWORD, USERNAME

    call_command("migrate", verbosity=0, interactive=False)
    get_user_model().objects.create_superuser(USERNAME, "", PASSWORD)
    return database_url


async def run_all(context, selected: list[str], profiling: dict | None) -> None:
    """The scenarios, then (unless `profiling` is None) a py-spy profile of
    each target they missed (benchmarks/profiles.py)."""
    import importlib

    for name in selected:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        # The machine is shared: how busy it was says how far to trust a row.
        context.results.setdefault("load", {})[name] = os.getloadavg()[0]
        module = importlib.import_module(f"benchmarks.{name}")
        await module.run(context)
        seconds = time.monotonic() - started
        context.results.setdefault("timings", {})[name] = seconds
        print(f"== {name}: {seconds:.0f} s", flush=True)
    if profiling is not None:
        from benchmarks import profiles

        print("== profiles of the targets missed", flush=True)
        await profiles.run(context, **profiling)
        seconds = context.results["profiles"]["elapsed"]
        print(f"== profiles: {seconds:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke run")
    parser.add_argument(
        "--only", nargs="+", choices=SCENARIOS, help="run only these scenarios"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report from the last run's raw samples",
    )
    parser.add_argument(
        "--no-profiles",
        action="store_true",
        help="skip the py-spy profiles of the targets missed",
    )
    parser.add_argument(
        "--profile",
        nargs="+",
        default=[],
        metavar="RECIPE",
        help="profile these recipes whatever the targets say; without --only, "
        "run no scenario (benchmarks/profile_recipes.py)",
    )
    options = parser.parse_args()
    if options.profile:
        from benchmarks.profile_recipes import RECIPES

        unknown = sorted(set(options.profile) - set(RECIPES))
        if unknown:
            parser.error(
                f"no such recipe: {', '.join(unknown)} (of {', '.join(RECIPES)})"
            )
    partial = options.quick or options.only or options.profile
    raw = (
        OUTPUT_ROOT
        / "var"
        / "benchmarks"
        / ("partial.json" if partial else "full.json")
    )
    if options.report_only:
        saved = json.loads(raw.read_text())
        publish(saved["results"], saved["meta"], partial=bool(partial))
        return 0
    if OUTPUT_ROOT == ROOT:
        run_from_snapshot()

    from benchmarks.stack import Context

    started = time.monotonic()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scratch = Path(tempfile.mkdtemp(prefix="peace-bench-"))
    print(f"scratch (logs, database): {scratch}", flush=True)
    collector = Collector()
    ok = False
    try:
        database_url = prepare_django(scratch)
        with redis_server() as redis_url:
            context = Context(
                scratch, collector, options.quick, database_url, redis_url
            )
            selected = options.only or ([] if options.profile else list(SCENARIOS))
            profiling = (
                None
                if options.no_profiles
                else {"partial": bool(partial), "forced": tuple(options.profile)}
            )
            asyncio.run(run_all(context, selected, profiling))
        ok = True
    finally:
        collector.close()
        if ok:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"failed; logs kept in {scratch}", file=sys.stderr)
    meta = {
        "command": os.environ.get("BENCH_COMMAND")
        or " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "date": date,
        "elapsed": time.monotonic() - started,
        "quick": options.quick,
        "machine": machine_facts(),
    }
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"results": context.results, "meta": meta}))
    publish(context.results, meta, partial=bool(partial))
    print(f"raw samples: {raw}; took {meta['elapsed']:.0f} s")
    return 0


def publish(results: dict, meta: dict, *, partial: bool) -> None:
    """A full run writes docs/; a quick or partial one writes var/benchmarks/."""
    from benchmarks import report

    folder = OUTPUT_ROOT / "var" / "benchmarks" if partial else OUTPUT_ROOT / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    plot = folder / "benchmarks-latency.png"
    report.plot(results, plot)
    report.plot_scaling(results, folder / "benchmarks-scaling.png")
    meta = {**meta, "plot": plot.name}
    out = folder / "benchmarks.md"
    report.write(results, meta, out)
    print(report.text(results))
    print(f"report: {out}; plot: {plot}")


if __name__ == "__main__":
    try:
        code = main()
    finally:
        remove_snapshot()
    sys.exit(code)
