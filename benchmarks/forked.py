"""Imported by the execution processes' forkserver (`benchmarks.probe` adds
it to `executions.runtime.process.PRELOAD`), after the product's own preload:
every execution process forked from there runs its engine through the
probed `run_spec` (`executions.runtime.child`'s), which reports `signal`,
`running` and `ran`, and knows the benchmarks' own commands
(`benchmarks/bench_cmds.py`). With PEACE_BENCH_NICE set (an experiment of
benchmarks/runtime.py, not a probe) it renices itself, and so every
execution process forked from it."""

from __future__ import annotations

import os

from benchmarks import bench_cmds
from benchmarks.probe import NICE_ENV, probed_run_spec
from executions.runtime import child

bench_cmds.register()
if os.environ.get(NICE_ENV):
    os.nice(int(os.environ[NICE_ENV]))
child.run_spec = probed_run_spec(child.run_spec)
