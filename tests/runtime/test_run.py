"""A run under its supervisor: the spec its execution process is started
with, and what it has told the engine of an interrupt."""

from __future__ import annotations

import pytest
from django.test import override_settings

from executions.models import Status
from executions.runtime.run import LOG_WRITE_LINES, Run
from tests.factories import execution

pytestmark = pytest.mark.django_db


def run_of(*, local: bool) -> Run:
    return Run(execution(Status.RUNNING), local=local, on_ack=lambda run: None)


def test_an_execution_process_runs_at_the_lowest_cpu_priority_by_default():
    assert run_of(local=False).spec.nice == 19


@override_settings(EXECUTIONS_EXECUTION_NICE=5)
def test_the_priority_drop_is_a_setting():
    assert run_of(local=False).spec.nice == 5


def test_a_terminals_own_run_keeps_the_priority_its_user_gave_it():
    assert run_of(local=True).spec.nice == 0


def test_a_run_asks_for_a_log_write_once_it_holds_enough_lines():
    asked: list[Run] = []
    run = Run(
        execution(Status.RUNNING),
        local=False,
        on_ack=lambda run: None,
        on_logs_due=asked.append,
    )
    line = {"step": "a", "at": "2026-12-04T00:00:00+00:00", "level": "info"}

    run.on_log([{**line, "text": "x"} for _ in range(LOG_WRITE_LINES - 1)], 0)
    before = len(asked)
    run.on_log([{**line, "text": "y"}], 0)
    run.take_logs()
    run.on_log([{**line, "text": "z"}], 0)

    assert (before, asked) == (0, [run])


class Told:
    """An engine that records what it was told."""

    def __init__(self) -> None:
        self.interrupts: list[bool] = []

    def interrupt(self, force: bool) -> None:
        self.interrupts.append(force)


@pytest.fixture
def told() -> tuple[Run, Told]:
    run = run_of(local=False)
    run.engine = Told()
    return run, run.engine


async def test_each_change_is_delivered_once_and_force_starts_the_ladder(told):
    run, engine = told

    run.deliver(False)
    run.deliver(False)
    assert run.escalation is None
    run.deliver(True)
    run.deliver(False)

    assert engine.interrupts == [False, True]
    assert run.escalation is not None
    run.escalation.cancel()


async def test_what_the_execution_process_heard_itself_is_not_relayed_again(told):
    run, engine = told

    # Its acknowledgement: it heard the request on its own place in the
    # control group, before the supervisor's copy arrived.
    assert run.heard(False)
    run.deliver(False)
    assert engine.interrupts == []
    assert run.escalation is None

    assert run.heard(True)  # a force it heard itself still starts the ladder
    assert not run.heard(True)
    run.deliver(True)

    assert engine.interrupts == []
    assert run.escalation is not None
    run.escalation.cancel()
