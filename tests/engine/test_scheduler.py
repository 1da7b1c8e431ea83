"""The scheduler: dependencies, bounded concurrency, failures, sync and async
steps, and what a run shares between its steps."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from executions.engine import (
    GraphError,
    OutcomeKind,
    Scheduler,
    Step,
    StepStatus,
    run_steps,
)

from .steps import HANG, Events, Gate, chain, failing, gated, noop, run, start, timed


def overlap(*intervals: tuple[float, float]) -> bool:
    """True if every interval shares a moment with every other."""
    return max(begin for begin, _ in intervals) < min(end for _, end in intervals)


async def test_scheduler_runs_independent_async_steps_concurrently():
    intervals: dict[str, tuple[float, float]] = {}

    outcome = await run([timed("a", intervals), timed("b", intervals)])

    assert outcome.kind is OutcomeKind.COMPLETE
    assert overlap(intervals["a"], intervals["b"])


async def test_scheduler_runs_independent_sync_steps_concurrently():
    # Each step waits for the other inside its thread: they can only both
    # succeed if they run at the same time.
    barrier = threading.Barrier(2, timeout=HANG)
    intervals: dict[str, tuple[float, float]] = {}

    def meet(ctx):
        start = time.monotonic()
        barrier.wait()
        intervals[ctx.step_id] = (start, time.monotonic())

    outcome = await run([Step("a", meet), Step("b", meet)])

    assert outcome.kind is OutcomeKind.COMPLETE
    assert overlap(intervals["a"], intervals["b"])


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_scheduler_never_exceeds_its_concurrency(concurrency):
    in_flight = []
    peak = 0

    async def count(ctx):
        nonlocal peak
        in_flight.append(ctx.step_id)
        peak = max(peak, len(in_flight))
        await asyncio.sleep(0.002)
        in_flight.remove(ctx.step_id)

    steps = [Step(f"s{number}", count) for number in range(10)]

    outcome = await run(steps, concurrency=concurrency)

    assert outcome.kind is OutcomeKind.COMPLETE
    assert peak == concurrency


def test_scheduler_refuses_a_concurrency_below_one():
    with pytest.raises(ValueError) as error:
        Scheduler([noop("a")], concurrency=0)

    assert str(error.value) == "concurrency must be at least 1"


def test_scheduler_refuses_an_invalid_graph():
    with pytest.raises(GraphError) as error:
        Scheduler([noop("a", "missing")])

    assert str(error.value) == "Step 'a' depends on unknown step 'missing'."


async def test_scheduler_starts_a_step_after_all_its_dependencies():
    order = []

    def record(step_id, *after):
        async def step(ctx):
            order.append(("start", step_id))
            await asyncio.sleep(0.001 if step_id == "b" else 0)
            order.append(("end", step_id))

        return Step(step_id, step, after=after)

    steps = [record("a"), record("b", "a"), record("c", "a"), record("d", "b", "c")]

    await run(steps)

    assert order.index(("start", "d")) > order.index(("end", "b"))
    assert order.index(("start", "d")) > order.index(("end", "c"))
    assert order.index(("start", "b")) > order.index(("end", "a"))


async def test_scheduler_stops_dispatching_after_a_failure_and_lets_in_flight_finish():
    gate = Gate()
    scheduler = Scheduler([gated("a", gate), failing("b"), noop("c", "a")])
    task = start(scheduler)
    await gate.wait_started()

    gate.open()
    outcome = await task

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.steps_processed == ("a",)
    assert outcome.steps_not_processed == ("b", "c")
    assert scheduler.states["c"].status is StepStatus.SKIPPED


async def test_scheduler_reports_a_sync_step_error():
    def broken(ctx):
        raise OSError("disk full")

    events = Events()

    outcome = await run([Step("a", broken)], on_step=events)

    assert outcome.errors == {"a": "OSError: disk full"}
    assert events.final("a").status is StepStatus.FAILED
    assert events.final("a").error == "OSError: disk full"


async def test_scheduler_gives_steps_params_and_shared_resources():
    seen = []

    def produce(ctx):
        ctx.resources["greeting"] = f"hello {ctx.params['name']}"

    async def consume(ctx):
        seen.append(ctx.resources["greeting"])

    steps = [Step("produce", produce), Step("consume", consume, after=["produce"])]

    await run(steps, params={"name": "peace"})

    assert seen == ["hello peace"]


async def test_scheduler_emits_running_then_the_end_with_times():
    events = Events()

    await run(chain("a", "b"), on_step=events)

    assert events.statuses("a") == ["running", "succeeded"]
    assert events.final("a").started_at <= events.final("a").finished_at
    assert events.final("a").finished_at <= events.final("b").started_at


async def test_scheduler_survives_a_failing_listener(caplog):
    def listener(state):
        raise RuntimeError("listener broke")

    with caplog.at_level(logging.ERROR, logger="executions.engine.scheduler"):
        outcome = await run(chain("a", "b"), on_step=listener)

    assert outcome.kind is OutcomeKind.COMPLETE
    assert "step listener failed for a" in caplog.messages


async def test_scheduler_skip_treats_earlier_steps_as_done_without_running_them():
    ran = []

    def step(step_id, *after):
        async def run_it(ctx):
            ran.append(ctx.step_id)

        return Step(step_id, run_it, after=after)

    steps = [step("a"), step("b", "a"), step("c", "b")]

    outcome = await run(steps, skip=["a", "b"])

    assert ran == ["c"]
    assert outcome.steps_processed == ("a", "b", "c")


async def test_scheduler_runs_a_1000_step_chain():
    steps = chain(*(f"s{number}" for number in range(1000)))

    outcome = await asyncio.wait_for(run_steps(steps), HANG)

    assert outcome.kind is OutcomeKind.COMPLETE
    assert len(outcome.steps_processed) == 1000
