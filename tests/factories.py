"""Executions in any state, recorded as the service and a runner leave them,
without running anything; and the whole table, to show that a refused
request changed nothing."""

from __future__ import annotations

from typing import Any

from executions import services
from executions.models import Execution, Source, Status
from executions.runtime.supervisor import Supervisor

#: Three steps that would take no time, if anything ran them.
FAST = {"count": 3, "seconds": 0, "ticks": 1}


def execution(
    status: str = Status.QUEUED,
    *,
    cmd: str = "demo.steps",
    params: dict[str, Any] | None = None,
    succeeded: int = 1,
    **start: Any,
) -> Execution:
    """An execution moved to `status`. One that ended early (failed,
    interrupted, lost) has its first `succeeded` steps done, so a resume has
    something to skip. `start` goes to `services.start_execution`."""
    start.setdefault("source", Source.CLI)
    execution = services.start_execution(
        cmd, FAST if params is None else params, dispatch=False, **start
    ).execution
    if status == Status.QUEUED:
        return execution
    execution.claim("test-runner")
    if status == Status.INTERRUPTING:
        services.request_interrupt(execution.pk, source=Source.CLI)
    elif status == Status.SUCCEEDED:
        _end(execution, status, "complete", len(execution.steps), "succeeded")
    elif status == Status.FAILED:
        _end(execution, status, "failed", succeeded, "failed")
    elif status == Status.INTERRUPTED:
        services.request_interrupt(execution.pk, source=Source.CLI)
        _end(execution, status, "interrupted", succeeded, "interrupted")
    elif status == Status.LOST:
        execution.save_steps(_steps(execution, succeeded, "running"))
        execution.mark_lost()
    return Execution.objects.get(pk=execution.pk)


def _steps(execution: Execution, succeeded: int, then: str) -> list[dict]:
    """The first `succeeded` steps succeeded, the next one `then`, the rest
    never started."""
    return [
        {**step, "status": _status(index, succeeded, then)}
        for index, step in enumerate(execution.steps)
    ]


def _status(index: int, succeeded: int, then: str) -> str:
    if index < succeeded:
        return "succeeded"
    return then if index == succeeded else "skipped"


def _end(
    execution: Execution, status: str, kind: str, succeeded: int, then: str
) -> None:
    steps = _steps(execution, succeeded, then)
    processed = [step["id"] for step in steps if step["status"] == "succeeded"]
    errors = {step["id"]: "boom" for step in steps if step["status"] == "failed"}
    outcome = {
        "kind": kind,
        "steps_processed": processed,
        "steps_not_processed": [s["id"] for s in steps if s["id"] not in processed],
        "errors": errors,
    }
    execution.finish(status, outcome=outcome, steps=steps)


def one_of_each() -> dict[str, Execution]:
    """An execution in every status, by status."""
    return {status: execution(status) for status in Status.values}


def table() -> list[dict[str, Any]]:
    """Every column of every execution: compare before and after."""
    return list(Execution.objects.order_by("pk").values())


async def run_here(execution_id, **engine: Any) -> Execution:
    """Run a recorded execution to its end in this process, supervised as a
    terminal's own run is (`signal=` and `observers=` go to the engine)."""
    supervisor = Supervisor(reaps=False)
    try:
        return await supervisor.run_here(execution_id, **engine)
    finally:
        await supervisor.close()


#: An ID no execution has (fixed: parametrized test IDs must not vary).
UNKNOWN_ID = "0b6e4f5a-6b1e-4c4e-9a3e-5f0d2c7d9e11"
