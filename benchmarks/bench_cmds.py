"""Commands only the benchmarks run, registered in the processes they probe
(daphne, whose API must accept them, and the execution processes' forkserver,
which runs them): steps that never cooperate with an interrupt, and one that
floods its log.

- `bench.block`: a sync step that sleeps in 10 ms pieces and never checks
  (`ctx.checkpoint()`): force can only abandon its thread.
- `bench.hold-gil`: a sync step inside one long C call (`sum` over a huge
  range) that never releases the GIL: the execution process's event loop
  cannot run, so only the supervisor's SIGTERM / SIGKILL of its process group
  can end it.
- `bench.log-flood`: a sync step that writes `rate` lines a second to its
  log with `ctx.log.info` (or, with via=logging, through a `logging` logger,
  as a library would) for `seconds`, in 10 ms batches, checking its
  interrupt after each batch (benchmarks/logflood.py); rate=0 is the same
  step quiet.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from executions.engine import Between, Step, UnknownCmd, command, registry

Seconds = Annotated[float, Between(0, 3600), "how long the step would run"]
Rate = Annotated[int, Between(0, 1_000_000), "log lines a second"]
Via = Annotated[str, "ctx (ctx.log) or logging (a logging logger)"]
#: The flood's batch: `rate / 100` lines every 10 ms.
BATCH_SECONDS = 0.01
flood_logger = logging.getLogger("benchmarks.flood")
#: Its info lines pass whatever the root logger's level (WARNING by default).
flood_logger.setLevel(logging.INFO)


def _block(ctx) -> None:
    deadline = time.monotonic() + ctx.params.seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def _hold_gil(ctx) -> None:
    sum(range(10**13))  # minutes in one C call, the GIL held throughout


def _flood(ctx) -> dict:
    """`rate` lines a second for `seconds`, paced in 10 ms batches; what it
    wrote and how far behind its schedule it fell."""
    params = ctx.params
    write = flood_logger.info if params.via == "logging" else ctx.log.info
    per_batch = params.rate * BATCH_SECONDS
    started = time.monotonic()
    deadline = started + params.seconds
    written = 0
    due = started
    while time.monotonic() < deadline:
        target = round((time.monotonic() - started) * params.rate)
        for number in range(written, max(target, written)):
            write("flood line %d of the benchmark's log flood", number)
        written = max(target, written)
        ctx.checkpoint()
        due += BATCH_SECONDS
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - started
    return {"written": written, "seconds": elapsed, "per_batch": per_batch}


def _register_flood() -> None:
    try:
        registry.get("bench.log-flood")
        return
    except UnknownCmd:
        pass

    def params(rate: Rate = 100_000, seconds: Seconds = 10.0, via: Via = "ctx") -> None:
        """A step flooding its log (benchmarks only)."""

    command(
        "bench.log-flood",
        title="bench.log-flood",
        steps=[Step("flood", _flood, "Flood")],
    )(params)


def register() -> None:
    _register_flood()
    for name, func in (("bench.block", _block), ("bench.hold-gil", _hold_gil)):
        try:
            registry.get(name)
            continue
        except UnknownCmd:
            pass

        def params(seconds: Seconds = 600.0) -> None:
            """A step that ignores interrupts (benchmarks only)."""

        command(name, title=name, steps=[Step("block", func, "Block")])(params)
