"""What an engine needs to run one execution, and the run itself: the part
shared by an execution process and a terminal's own run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..engine import (
    InterruptSignal,
    InterruptStrategy,
    Outcome,
    OutcomeKind,
    Scheduler,
    StepState,
    registry,
)
from ..engine.logs import LogListener
from ..engine.progress import Pace
from ..models import Execution, Source

logger = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """Plain data (it crosses into the execution process): everything the
    engine needs, so the execution process need not read the database."""

    execution_id: str
    cmd: str
    params: dict[str, Any]
    strategy: str
    #: Steps that succeeded in the run this one resumes: not run again.
    skip: list[str] = field(default_factory=list)
    #: Their results, for the steps that depend on them.
    results: dict[str, Any] = field(default_factory=dict)
    #: How often steps are sampled while someone watches the run, and while
    #: nobody does (then only the database reads them: its write interval).
    progress_interval: float = 0.05
    unwatched_interval: float = 0.5
    #: Started from a shared door (web, API, admin): their limits apply to
    #: the steps too (files.sync's roots), not only to the params.
    restricted: bool = False
    #: How much lower the execution process's CPU priority is (os.nice).
    nice: int = 0
    #: An interrupt that waited on the queued row: None, or its force.
    interrupt: bool | None = None
    #: The cap on log lines at the source (EXECUTIONS_LOG_RATE, _BURST).
    log_rate: float = 1000.0
    log_burst: int = 2000

    @classmethod
    def of(
        cls,
        execution: Execution,
        *,
        progress_interval: float,
        unwatched_interval: float,
        log_rate: float = 1000.0,
        log_burst: int = 2000,
        nice: int = 0,
    ) -> RunSpec:
        original = execution.resumed_from
        skip = []
        results = {}
        if original is not None:
            skip = [s["id"] for s in original.steps if s["status"] == "succeeded"]
            results = {k: v for k, v in original.results.items() if k in skip}
        interrupt = None
        if execution.interrupt_requested_at is not None:
            interrupt = execution.interrupt_force
        return cls(
            execution_id=str(execution.id),
            cmd=execution.cmd,
            params=execution.params,
            strategy=execution.strategy,
            skip=skip,
            results=results,
            progress_interval=progress_interval,
            unwatched_interval=unwatched_interval,
            restricted=execution.created_from != Source.CLI,
            interrupt=interrupt,
            log_rate=log_rate,
            log_burst=log_burst,
            nice=nice,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    """How an engine run ended: the outcome, and each step's result."""

    outcome: Outcome
    results: dict[str, Any]


async def run_spec(
    spec: RunSpec,
    signal: InterruptSignal,
    on_step: Callable[[StepState], None],
    on_log: LogListener | None = None,
    *,
    whole_process: bool = False,
    pace: Pace | None = None,
) -> Report:
    """Run the command's steps under `signal` to a report, their log lines
    to `on_log`, sampled at `pace` (the spec's progress interval unless its
    caller changes it as the run goes). A command that cannot be built (it
    changed or vanished since the row was made) fails the run with that
    error instead of raising. `whole_process`: this process is the run's
    (an execution process), so output from threads no step started is the
    run's too."""
    try:
        cmd = registry.get(spec.cmd)
        steps = cmd.build(spec.params)
        strategy = InterruptStrategy.parse(spec.strategy)
    except Exception as error:
        logger.exception("cannot run execution %s", spec.execution_id)
        outcome = Outcome(
            OutcomeKind.FAILED,
            (),
            (),
            {"setup": f"{type(error).__name__}: {error}"},
        )
        return Report(outcome, {})
    if spec.interrupt is not None:
        signal.request(force=spec.interrupt)
    scheduler = Scheduler(
        steps,
        cmd.bind(spec.params),
        signal=signal,
        strategy=strategy,
        on_step=on_step,
        progress_interval=pace or Pace(spec.progress_interval),
        skip=spec.skip,
        results=spec.results,
        restricted=spec.restricted,
        on_log=on_log,
        log_rate=spec.log_rate,
        log_burst=spec.log_burst,
        log_fallback=whole_process,
    )
    outcome = await scheduler.run()
    return Report(outcome, dict(scheduler.results))
