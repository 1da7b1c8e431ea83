"""The interrupt signal, the strategies, and what an interrupt does to a run:
the cases Peace tests for its `InterruptStrategy`, ported to the scheduler."""

from __future__ import annotations

import threading

import pytest

from executions.engine import (
    InterruptSignal,
    InterruptStrategy,
    OutcomeKind,
    Scheduler,
    Step,
    StepStatus,
)
from executions.engine.scheduler import ABANDONED, CANCELLED

from .steps import (
    Events,
    Gate,
    blocking_sync,
    chain,
    failing,
    gated,
    noop,
    run,
    start,
    wait_in_thread,
)


def interrupted_signal(force: bool = False) -> InterruptSignal:
    signal = InterruptSignal()
    signal.request(force=force)
    return signal


# -- the signal ------------------------------------------------------------------------


def test_signal_request_reports_only_a_change():
    signal = InterruptSignal()

    first = signal.request()
    second = signal.request()

    assert (first, second) == (True, False)
    assert (signal.requested, signal.force) == (True, False)


def test_signal_force_escalates_and_never_goes_back():
    signal = InterruptSignal()

    results = [signal.request(), signal.request(force=True), signal.request()]

    assert results == [True, True, False]
    assert signal.force


def test_signal_listeners_hear_each_change_once():
    signal = InterruptSignal()
    heard = []
    signal.add_listener(lambda: heard.append((signal.requested, signal.force)))

    signal.request()
    signal.request()
    signal.request(force=True)

    assert heard == [(True, False), (True, True)]


# -- the strategies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "n", "grace"),
    [
        (None, "finish-current", 0, 0),
        ("", "finish-current", 0, 0),
        ("finish-current", "finish-current", 0, 0),
        ("ignore", "ignore", 0, 0),
        ("poll-next-n:0", "poll-next-n", 0, 0),
        ("poll-next-n:3", "poll-next-n", 3, 3),
    ],
)
def test_strategy_parse_accepts_every_form(text, kind, n, grace):
    strategy = InterruptStrategy.parse(text)

    assert (strategy.kind, strategy.n, strategy.grace) == (kind, n, grace)


@pytest.mark.parametrize("text", ["finish-current", "ignore", "poll-next-n:2"])
def test_strategy_str_round_trips(text):
    assert str(InterruptStrategy.parse(text)) == text


@pytest.mark.parametrize(
    "text", ["sometimes", "poll-next-n", "poll-next-n:-1", "poll-next-n:x", "IGNORE"]
)
def test_strategy_parse_refuses_unknown(text):
    with pytest.raises(ValueError) as error:
        InterruptStrategy.parse(text)

    assert str(error.value) == (
        f"Unknown interrupt strategy {text!r}: use finish-current, "
        "poll-next-n:N (N a whole number) or ignore."
    )


# -- interrupts before the run starts --------------------------------------------------


async def test_finish_current_before_start_processes_nothing():
    events = Events()

    outcome = await run(
        chain("a", "b", "c"), signal=interrupted_signal(), on_step=events
    )

    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert outcome.steps_processed == ()
    assert outcome.steps_not_processed == ("a", "b", "c")
    assert [events.statuses(step) for step in "abc"] == [["skipped"]] * 3


@pytest.mark.parametrize("parallel", [False, True])
async def test_poll_next_n_before_start_processes_exactly_n(parallel):
    steps = [noop(s) for s in "abcd"] if parallel else chain("a", "b", "c", "d")

    outcome = await run(
        steps,
        signal=interrupted_signal(),
        strategy=InterruptStrategy.parse("poll-next-n:2"),
    )

    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert outcome.steps_processed == ("a", "b")
    assert outcome.steps_not_processed == ("c", "d")


async def test_poll_next_n_zero_before_start_is_finish_current():
    outcome = await run(
        chain("a", "b"),
        signal=interrupted_signal(),
        strategy=InterruptStrategy.parse("poll-next-n:0"),
    )

    assert outcome.steps_processed == ()
    assert outcome.steps_not_processed == ("a", "b")


async def test_ignore_runs_to_the_end():
    outcome = await run(
        chain("a", "b", "c"),
        signal=interrupted_signal(),
        strategy=InterruptStrategy.parse("ignore"),
    )

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.steps_processed == ("a", "b", "c")


# -- interrupts while steps run --------------------------------------------------------


@pytest.mark.parametrize("strategy", ["finish-current", "poll-next-n:0"])
async def test_interrupt_while_running_finishes_in_flight_and_runs_nothing_new(
    strategy,
):
    gate = Gate()
    # With one slot, "b" is ready but waiting when the interrupt comes.
    scheduler = Scheduler(
        [gated("a", gate), noop("b"), noop("c", "a")],
        strategy=InterruptStrategy.parse(strategy),
        concurrency=1,
    )
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    gate.open()
    outcome = await task

    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert outcome.steps_processed == ("a",)
    assert outcome.steps_not_processed == ("b", "c")
    assert [scheduler.states[s].status for s in "abc"] == [
        StepStatus.SUCCEEDED,
        StepStatus.SKIPPED,
        StepStatus.SKIPPED,
    ]


async def test_interrupt_seen_by_a_step_in_flight():
    gate = Gate()
    seen = []

    async def look(ctx):
        seen.append(ctx.interrupted)
        gate.started.set()
        await gate.opened.wait()
        seen.append(ctx.interrupted)

    scheduler = Scheduler([Step("a", look)])
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    gate.open()
    await task

    assert seen == [False, True]


async def test_cooperative_step_stops_at_its_checkpoint():
    gate = Gate()
    scheduler = Scheduler([gated("a", gate, cooperative=True), noop("b", "a")])
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    outcome = await task

    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert outcome.steps_not_processed == ("a", "b")
    assert outcome.errors == {}
    assert scheduler.states["a"].status is StepStatus.INTERRUPTED
    assert scheduler.states["a"].error is None
    assert scheduler.states["b"].status is StepStatus.SKIPPED


async def test_interrupt_after_the_last_step_is_complete():
    signal = InterruptSignal()

    def interrupt_when_c_succeeds(state):
        if state.id == "c" and state.status is StepStatus.SUCCEEDED:
            signal.request()

    outcome = await run(
        chain("a", "b", "c"), signal=signal, on_step=interrupt_when_c_succeeds
    )

    assert signal.requested
    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.steps_processed == ("a", "b", "c")


async def test_interrupt_during_the_last_step_that_finishes_is_complete():
    gate = Gate()
    scheduler = Scheduler([noop("a"), gated("b", gate, "a")])
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    gate.open()
    outcome = await task

    assert outcome.kind is OutcomeKind.COMPLETE


async def test_failure_beside_an_interrupt_is_failed():
    gate = Gate()
    scheduler = Scheduler([gated("a", gate), failing("b"), noop("c", "a")])
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    gate.open()
    outcome = await task

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.steps_processed == ("a",)
    assert outcome.steps_not_processed == ("b", "c")
    assert outcome.errors == {"b": "RuntimeError: boom"}


async def test_ignore_lets_a_cooperative_step_finish():
    gate = Gate()
    scheduler = Scheduler(
        [gated("a", gate, cooperative=True), noop("b", "a")],
        strategy=InterruptStrategy.parse("ignore"),
    )
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    gate.open()
    outcome = await task

    assert outcome.kind is OutcomeKind.COMPLETE
    assert outcome.steps_processed == ("a", "b")


async def test_poll_next_n_granted_steps_run_to_the_end():
    gate = Gate()
    scheduler = Scheduler(
        [gated("a", gate, cooperative=True), noop("b", "a")],
        signal=interrupted_signal(),
        strategy=InterruptStrategy.parse("poll-next-n:1"),
    )
    task = start(scheduler)
    await gate.wait_started()

    gate.open()
    outcome = await task

    assert outcome.steps_processed == ("a",)
    assert outcome.steps_not_processed == ("b",)
    assert scheduler.states["a"].status is StepStatus.SUCCEEDED


async def test_poll_next_n_step_in_flight_is_free_and_n_more_run():
    gate = Gate()
    steps = [gated("a", gate, cooperative=True), *chain("a", "b", "c", "d")[1:]]
    scheduler = Scheduler(steps, strategy=InterruptStrategy.parse("poll-next-n:2"))
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    gate.open()
    outcome = await task

    assert outcome.steps_processed == ("a", "b", "c")
    assert outcome.steps_not_processed == ("d",)


# -- force -----------------------------------------------------------------------------


async def test_force_cancels_async_steps_in_flight():
    gate = Gate()
    scheduler = Scheduler([gated("a", gate), noop("b", "a")])
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request(force=True)
    outcome = await task

    assert gate.cancelled.is_set()
    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert outcome.steps_not_processed == ("a", "b")
    assert scheduler.states["a"].status is StepStatus.INTERRUPTED
    assert scheduler.states["a"].error == CANCELLED
    assert scheduler.states["b"].status is StepStatus.SKIPPED


async def test_force_abandons_sync_steps_and_ends_the_run_at_once():
    started, release, returned = (threading.Event() for _ in range(3))
    scheduler = Scheduler(
        [blocking_sync("a", started, release, returned), noop("b", "a")]
    )
    task = start(scheduler)
    await wait_in_thread(started)

    scheduler.signal.request(force=True)
    outcome = await task
    ended_while_step_ran = not returned.is_set()
    release.set()

    assert ended_while_step_ran
    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert scheduler.states["a"].status is StepStatus.INTERRUPTED
    assert scheduler.states["a"].error == ABANDONED
    assert scheduler.states["b"].status is StepStatus.SKIPPED


@pytest.mark.parametrize("strategy", ["finish-current", "ignore", "poll-next-n:5"])
async def test_force_overrides_every_strategy(strategy):
    gate = Gate()
    scheduler = Scheduler(
        [gated("a", gate)], strategy=InterruptStrategy.parse(strategy)
    )
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    scheduler.signal.request(force=True)
    outcome = await task

    assert outcome.steps_not_processed == ("a",)
    assert scheduler.states["a"].error == CANCELLED
