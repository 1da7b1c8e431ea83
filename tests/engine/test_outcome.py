"""The outcome of a run: which steps were processed and which were not, in
definition order, and the errors of the steps that failed."""

from __future__ import annotations

from executions.engine import Outcome, OutcomeKind, Scheduler

from .steps import Gate, failing, gated, noop, start


async def test_outcome_partitions_the_steps_in_definition_order():
    # "late" finishes after "early" and "skipped" is never run: the lists
    # follow the definition, not the order things happened in.
    gate = Gate()
    steps = [
        gated("late", gate),
        noop("skipped", "broken"),
        noop("early"),
        failing("broken", "early"),
    ]
    scheduler = Scheduler(steps)
    task = start(scheduler)
    await gate.wait_started()

    gate.open()
    outcome = await task

    assert outcome.steps_processed == ("late", "early")
    assert outcome.steps_not_processed == ("skipped", "broken")
    assert set(outcome.steps_processed).isdisjoint(outcome.steps_not_processed)


async def test_outcome_errors_map_only_failed_steps_to_their_message():
    gate = Gate()
    steps = [
        gated("waits", gate, cooperative=True),
        failing("first", message="no route to host"),
        failing("second", message="permission denied"),
    ]
    scheduler = Scheduler(steps)
    task = start(scheduler)
    await gate.wait_started()

    scheduler.signal.request()
    outcome = await task

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.errors == {
        "first": "RuntimeError: no route to host",
        "second": "RuntimeError: permission denied",
    }
    assert outcome.steps_not_processed == ("waits", "first", "second")


def test_outcome_to_dict_is_the_contract_shape():
    outcome = Outcome(
        OutcomeKind.FAILED, ("a",), ("b", "c"), {"b": "RuntimeError: boom"}
    )

    assert outcome.to_dict() == {
        "kind": "failed",
        "steps_processed": ["a"],
        "steps_not_processed": ["b", "c"],
        "errors": {"b": "RuntimeError: boom"},
    }
