"""The scheduler: dependencies, bounded concurrency, failures, sync and async
steps, and the results steps pass to the steps that take them."""

from __future__ import annotations

import asyncio
import functools
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


async def test_scheduler_passes_a_result_to_the_steps_that_take_it():
    seen = []

    def produce(ctx):
        return {"greeting": f"hello {ctx.params.name}"}

    async def consume(ctx, produce):
        seen.append(produce["greeting"])

    steps = [Step("produce", produce), Step("consume", consume, inputs=["produce"])]

    await run(steps, params={"name": "peace"})

    assert seen == ["hello peace"]


async def test_scheduler_keeps_results_as_json_reads_them_back():
    scheduler = Scheduler([Step("a", lambda ctx: {1: ("x", 2.5)})])

    await asyncio.wait_for(scheduler.run(), HANG)

    assert scheduler.results == {"a": {"1": ["x", 2.5]}}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"at": {1, 2}}, "Object of type set is not JSON serializable"),
        (float("nan"), "Out of range float values are not JSON compliant"),
    ],
)
async def test_scheduler_fails_a_step_whose_result_is_not_json(value, why):
    async def returns(ctx):
        return value

    events = Events()
    steps = [Step("fetch", returns), noop("after", "fetch"), noop("beside")]

    outcome = await run(steps, on_step=events)

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.errors == {
        "fetch": f"step fetch returned a value that is not JSON: {why}"
    }
    assert outcome.steps_processed == ("beside",)
    assert events.final("after").status is StepStatus.SKIPPED


async def test_scheduler_gives_the_result_in_the_success_event_not_in_to_dict():
    events = Events()

    await run([Step("a", lambda ctx: [1, 2])], on_step=events)

    assert [(str(s.status), s.result) for s in events.of("a")] == [
        ("running", None),
        ("succeeded", [1, 2]),
    ]
    assert "result" not in events.final("a").to_dict()


def recorder(step_id: str, seen: dict, *inputs: str) -> Step:
    def step(ctx, **results):
        seen[step_id] = results
        return f"{step_id}-result"

    return Step(step_id, step, inputs=inputs)


async def test_scheduler_resume_gives_skipped_steps_stored_results():
    seen: dict = {}
    steps = [recorder("a", seen), recorder("b", seen, "a"), recorder("c", seen, "b")]
    scheduler = Scheduler(steps, skip=["a", "b"], results={"a": 1, "b": {"n": 2}})
    events = Events()
    scheduler.on_step = events

    await asyncio.wait_for(scheduler.run(), HANG)

    assert seen == {"c": {"b": {"n": 2}}}
    assert scheduler.results == {"a": 1, "b": {"n": 2}, "c": "c-result"}
    assert events.final("b").result == {"n": 2}


async def test_scheduler_resume_runs_again_a_step_whose_result_was_not_stored():
    seen: dict = {}
    steps = [recorder("a", seen), recorder("b", seen, "a"), recorder("c", seen, "b")]

    outcome = await run(steps, skip=["a", "b"], results={"a": 1})

    assert seen == {"b": {"a": 1}, "c": {"b": "b-result"}}
    assert outcome.steps_processed == ("a", "b", "c")


async def test_scheduler_tells_steps_whether_the_run_is_restricted():
    seen = []

    def look(ctx):
        seen.append(ctx.restricted)

    await run([Step("a", look)])
    await run([Step("a", look)], restricted=True)

    assert seen == [False, True]


# -- async callables that are not `async def` ----------------------------------------


class AsyncCallable:
    def __init__(self) -> None:
        self.loop = None

    async def __call__(self, ctx):
        self.loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        return "awaited"


async def test_scheduler_awaits_an_object_with_an_async_call():
    step = AsyncCallable()
    scheduler = Scheduler([Step("a", step)])

    outcome = await asyncio.wait_for(scheduler.run(), HANG)

    assert outcome.kind is OutcomeKind.COMPLETE
    assert step.loop is asyncio.get_running_loop()
    assert scheduler.results == {"a": "awaited"}


async def test_scheduler_awaits_a_partial_of_an_async_function():
    async def add(ctx, n):
        await asyncio.sleep(0)
        return n + 1

    scheduler = Scheduler([Step("a", functools.partial(add, n=1))])

    await asyncio.wait_for(scheduler.run(), HANG)

    assert scheduler.results == {"a": 2}


async def test_scheduler_fails_a_plain_step_that_returns_a_coroutine():
    ran = []

    async def work(ctx):
        ran.append(ctx.step_id)

    outcome = await run([Step("lying", lambda ctx: work(ctx))])

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.errors == {
        "lying": "step lying is a plain function but returned an awaitable "
        "(coroutine) that would never run: make it `async def`"
    }
    assert ran == []


async def test_scheduler_fails_an_async_step_called_with_the_wrong_arguments():
    async def needs_more(ctx, missing):
        return None

    outcome = await run([Step("a", needs_more), noop("b")])

    assert outcome.errors["a"].startswith("TypeError: ")
    assert outcome.steps_processed == ("b",)


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
