"""Step factories for the engine tests.

The test decides when a step starts, finishes or is interrupted (gates and
events), never a sleep, so every interleaving a test asserts is the only one
that can happen.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from executions.engine import Outcome, Scheduler, Step, StepContext, StepState

#: Generous upper bound for anything a test waits on: catches hangs only.
HANG = 10.0


class Events:
    """A step listener that keeps every event, for assertions."""

    def __init__(self) -> None:
        self.all: list[StepState] = []

    def __call__(self, state: StepState) -> None:
        self.all.append(state)

    def of(self, step_id: str) -> list[StepState]:
        return [state for state in self.all if state.id == step_id]

    def statuses(self, step_id: str) -> list[str]:
        """The step's statuses as emitted, repeats collapsed."""
        result: list[str] = []
        for state in self.of(step_id):
            if not result or result[-1] != state.status:
                result.append(str(state.status))
        return result

    def final(self, step_id: str) -> StepState:
        return self.of(step_id)[-1]


class Gate:
    """Holds an async step until the test opens it; says when it started."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.opened = asyncio.Event()
        #: Set when the step was cancelled while it waited.
        self.cancelled = asyncio.Event()

    async def wait_started(self) -> None:
        await asyncio.wait_for(self.started.wait(), HANG)

    def open(self) -> None:
        self.opened.set()


def noop(step_id: str, *after: str) -> Step:
    async def run(ctx: StepContext) -> None:
        return None

    return Step(step_id, run, after=after)


def failing(step_id: str, *after: str, message: str = "boom") -> Step:
    async def run(ctx: StepContext) -> None:
        raise RuntimeError(message)

    return Step(step_id, run, after=after)


def gated(step_id: str, gate: Gate, *after: str, cooperative: bool = False) -> Step:
    """Runs until `gate` opens. A cooperative one calls `checkpoint()` before
    each look at the gate, so after an interrupt it always meets one more
    checkpoint before it can finish."""

    async def run(ctx: StepContext) -> None:
        gate.started.set()
        try:
            while True:
                if cooperative:
                    ctx.checkpoint()
                if gate.opened.is_set():
                    return
                await asyncio.sleep(0.001)
        except asyncio.CancelledError:
            gate.cancelled.set()
            raise

    return Step(step_id, run, after=after)


def blocking_sync(
    step_id: str,
    started: threading.Event,
    release: threading.Event,
    returned: threading.Event | None = None,
) -> Step:
    """A plain `def` step (run in a thread) that blocks until released, and
    says when it has returned."""

    def run(ctx: StepContext) -> None:
        started.set()
        release.wait(HANG)
        if returned is not None:
            returned.set()

    return Step(step_id, run)


def timed(step_id: str, intervals: dict[str, tuple[float, float]]) -> Step:
    """Records when it ran, as (start, end) on the monotonic clock."""

    async def run(ctx: StepContext) -> None:
        start = time.monotonic()
        await asyncio.sleep(0.02)
        intervals[step_id] = (start, time.monotonic())

    return Step(step_id, run)


def chain(*step_ids: str) -> list[Step]:
    """No-op steps, each after the one before."""
    return [
        noop(step_id, *step_ids[index - 1 : index])
        for index, step_id in enumerate(step_ids)
    ]


async def run(steps: Sequence[Step], **options) -> Outcome:
    return await asyncio.wait_for(Scheduler(steps, **options).run(), HANG)


async def wait_in_thread(event: threading.Event) -> None:
    """Wait for an event a step thread sets, without blocking the loop."""
    assert await asyncio.to_thread(event.wait, HANG)


def start(scheduler: Scheduler) -> asyncio.Task:
    """Run a scheduler in the background, for tests that act while it runs."""
    return asyncio.ensure_future(asyncio.wait_for(scheduler.run(), HANG))
