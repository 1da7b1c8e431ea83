"""Progress: the tracker a step reports to, coalescing into a bounded number
of step events, stall detection, and the step state's JSON shape."""

from __future__ import annotations

import asyncio
import time

import pytest

from executions.engine import ProgressTracker, Step, StepState, StepStatus
from executions.engine.progress import Pace

from .steps import HANG, Events, run

MILLION = 1_000_000


def test_progress_tracker_counts_and_samples():
    tracker = ProgressTracker(total=10, unit="bytes")

    tracker.advance()
    tracker.advance(4)
    tracker.message = "halfway"

    assert tracker.sample() == (5, 10, "bytes", "halfway")


def test_progress_tracker_set_moves_done_and_keeps_total_unless_given():
    tracker = ProgressTracker(total=10)

    tracker.set(3)
    kept = tracker.total
    tracker.set(4, total=20)

    assert (kept, tracker.done, tracker.total) == (10, 4, 20)


def test_progress_tracker_refuses_an_unknown_unit():
    with pytest.raises(ValueError) as error:
        ProgressTracker(unit="percent")

    assert str(error.value) == "Unknown progress unit 'percent': use steps or bytes."


@pytest.mark.parametrize("interval", [0.01, 0.05])
async def test_progress_a_million_advances_are_coalesced(interval):
    def count(ctx):
        for _ in range(MILLION):
            ctx.progress.advance()

    events = Events()
    began = time.monotonic()

    await run(
        [Step("a", count, total=MILLION)], on_step=events, progress_interval=interval
    )
    elapsed = time.monotonic() - began

    # One event when it starts, at most one per sampling interval, one at the end.
    assert len(events.of("a")) <= elapsed / interval + 3
    done = [state.done for state in events.of("a")]
    assert done == sorted(done)
    assert (events.final("a").status, done[-1]) == (StepStatus.SUCCEEDED, MILLION)


async def test_progress_the_final_value_goes_out_between_samples():
    async def burst(ctx):
        for _ in range(MILLION):
            ctx.progress.advance()
        ctx.progress.message = "all counted"

    events = Events()

    await run([Step("a", burst)], on_step=events, progress_interval=HANG)

    assert [(s.status, s.done) for s in events.of("a")] == [
        (StepStatus.RUNNING, 0),
        (StepStatus.SUCCEEDED, MILLION),
    ]
    assert events.final("a").message == "all counted"


async def test_progress_unchanged_steps_emit_nothing_new():
    async def idle(ctx):
        ctx.progress.advance()
        await asyncio.sleep(0.05)

    events = Events()

    await run([Step("a", idle)], on_step=events, progress_interval=0.005)

    # Started at 0, sampled once at 1, then quiet until it succeeded.
    assert [(s.status, s.done) for s in events.of("a")] == [
        (StepStatus.RUNNING, 0),
        (StepStatus.RUNNING, 1),
        (StepStatus.SUCCEEDED, 1),
    ]


async def test_progress_a_quiet_step_is_stalled_then_running_again():
    stalled, resumed = asyncio.Event(), asyncio.Event()
    events = Events()

    def listen(state: StepState) -> None:
        events(state)
        if state.status is StepStatus.STALLED:
            stalled.set()
        elif state.status is StepStatus.RUNNING and stalled.is_set():
            resumed.set()

    async def pause(ctx):
        ctx.progress.advance()
        await asyncio.wait_for(stalled.wait(), HANG)
        ctx.progress.advance()
        await asyncio.wait_for(resumed.wait(), HANG)

    await run(
        [Step("a", pause)], on_step=listen, progress_interval=0.005, stall_after=0.02
    )

    assert events.statuses("a") == ["running", "stalled", "running", "succeeded"]
    first_stalled = next(s for s in events.of("a") if s.status is StepStatus.STALLED)
    assert first_stalled.done == 1
    assert events.final("a").done == 2


async def test_progress_a_busy_step_never_stalls():
    async def busy(ctx):
        for _ in range(20):
            ctx.progress.advance()
            await asyncio.sleep(0.002)

    events = Events()

    await run([Step("a", busy)], on_step=events, progress_interval=0.005, stall_after=1)

    assert events.statuses("a") == ["running", "succeeded"]


async def test_progress_an_idle_step_is_sampled_less_often_and_a_change_soon(
    monkeypatch,
):
    from executions.engine import scheduler

    samples = []
    sample = scheduler.Scheduler._sample

    def counted(self, step_id, now):
        samples.append(now)
        return sample(self, step_id, now)

    monkeypatch.setattr(scheduler.Scheduler, "_sample", counted)
    seen = {}

    def listen(state: StepState) -> None:
        if state.done == 1 and "at" not in seen:
            seen["at"] = time.monotonic()

    async def wait_then_move(ctx):
        await asyncio.sleep(0.5)
        seen["moved"] = time.monotonic()
        ctx.progress.advance()
        await asyncio.sleep(0.1)

    interval = 0.01
    await run([Step("a", wait_then_move)], on_step=listen, progress_interval=interval)

    idle = [at for at in samples if at < seen["moved"]]
    # Twenty a second while busy would be 50 samples in the 0.5 s of waiting.
    assert len(idle) < 0.5 / interval / 3
    # The wait between samples is capped, so the change is seen soon.
    assert seen["at"] - seen["moved"] <= interval * scheduler.IDLE_SAMPLING + 0.1


async def test_progress_a_pace_changed_mid_run_slows_sampling_and_quickens_at_once():
    pace = Pace(0.01)
    seen = {}

    def listen(state: StepState) -> None:
        seen.setdefault("events", []).append(time.monotonic())

    async def tick(ctx):
        pace.set(HANG)  # nobody watches any more
        slowed = time.monotonic()
        while time.monotonic() - slowed < 0.3:
            ctx.progress.advance()
            await asyncio.sleep(0.005)
        seen["quickened"] = time.monotonic()
        pace.set(0.01)  # a watcher joined
        while time.monotonic() - seen["quickened"] < 0.2:
            ctx.progress.advance()
            await asyncio.sleep(0.005)

    await run([Step("a", tick)], on_step=listen, progress_interval=pace)

    events = seen["events"]
    slow = [at for at in events[1:-1] if at < seen["quickened"]]
    quick = [at for at in events[1:-1] if at >= seen["quickened"]]
    # At most the sample already under way when the pace slowed (0.01 s);
    # thirty at the first pace.
    assert len(slow) <= 1
    # The slow wait ended when the pace quickened: not HANG seconds later.
    assert len(quick) >= 5
    assert quick[0] - seen["quickened"] < 0.1


def test_step_state_to_dict_is_the_contract_shape():
    state = StepState(
        id="copy",
        title="Copy the files",
        after=("scan",),
        status=StepStatus.RUNNING,
        done=5,
        total=10,
        unit="bytes",
        message="a.txt",
        started_at=0.25,
    )

    assert state.to_dict() == {
        "id": "copy",
        "title": "Copy the files",
        "after": ["scan"],
        "status": "running",
        "progress": {"done": 5, "total": 10, "unit": "bytes"},
        "message": "a.txt",
        "started_at": "1970-01-01T00:00:00.250Z",
        "finished_at": None,
        "error": None,
        "traceback": None,
    }
