"""Imported by the execution processes' forkserver (`benchmarks.probe` adds
it to `executions.runtime.process.PRELOAD`), after the product's own preload:
every execution process forked from there runs its engine through the
probed `run_spec` (`executions.runtime.child`'s), which reports `signal`,
`running` and `ran`, and knows the benchmarks' own commands
(`benchmarks/bench_cmds.py`)."""

from __future__ import annotations

from benchmarks import bench_cmds
from benchmarks.probe import probed_run_spec
from executions.runtime import child

bench_cmds.register()
child.run_spec = probed_run_spec(child.run_spec)
