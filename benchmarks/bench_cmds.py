"""Commands only the benchmarks run, registered in the processes they probe
(daphne, whose API must accept them, and the execution processes' forkserver,
which runs them): steps that never cooperate with an interrupt.

- `bench.block`: a sync step that sleeps in 10 ms pieces and never checks
  (`ctx.checkpoint()`): force can only abandon its thread.
- `bench.hold-gil`: a sync step inside one long C call (`sum` over a huge
  range) that never releases the GIL: the execution process's event loop
  cannot run, so only the supervisor's SIGTERM / SIGKILL of its process group
  can end it.
"""

from __future__ import annotations

import time
from typing import Annotated

from executions.engine import Between, Step, UnknownCmd, command, registry

Seconds = Annotated[float, Between(0, 3600), "how long the step would run"]


def _block(ctx) -> None:
    deadline = time.monotonic() + ctx.params.seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def _hold_gil(ctx) -> None:
    sum(range(10**13))  # minutes in one C call, the GIL held throughout


def register() -> None:
    for name, func in (("bench.block", _block), ("bench.hold-gil", _hold_gil)):
        try:
            registry.get(name)
            continue
        except UnknownCmd:
            pass

        def params(seconds: Seconds = 600.0) -> None:
            """A step that ignores interrupts (benchmarks only)."""

        command(name, title=name, steps=[Step("block", func, "Block")])(params)
