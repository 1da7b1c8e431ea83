"""The engines' side of the runtime in this process: handing a recorded
execution to an engine (`dispatch`), and the task body every engine runs
(`runtime.taskqueues.supervise`). tests/scaleout/test_engines.py drives the
real workers."""

from __future__ import annotations

import os
import signal

import pytest

from executions import services
from executions.models import Execution, Source, Status
from executions.runtime import dispatch
from executions.runtime.identity import pid_of
from executions.runtime.taskqueues import supervise

pytestmark = pytest.mark.django_db(transaction=True)

#: What the fake engines below were handed.
handed: list[str] = []


def accept(execution_id) -> None:
    handed.append(str(execution_id))


def worker_handler(number, frame) -> None:
    """A worker's own SIGTERM handler."""


def refuse(execution_id) -> None:
    raise ConnectionError("the broker is down")


@pytest.fixture
def engine(settings, monkeypatch):
    """EXECUTIONS_RUNNER=celery, its engine replaced by `use(function)`."""
    settings.EXECUTIONS_RUNNER = "celery"
    handed.clear()

    def use(function) -> None:
        monkeypatch.setitem(
            dispatch.TASK_QUEUES, "celery", f"{__name__}.{function.__name__}"
        )

    return use


def start(**params) -> Execution:
    return services.start_execution(
        "demo.steps", {"count": 2, "seconds": 0.1, **params}, source=Source.API
    ).execution


def test_dispatch_hands_a_started_execution_to_the_engine_queued(engine):
    engine(accept)

    execution = start()

    assert handed == [str(execution.id)]
    execution.refresh_from_db()
    assert execution.status == Status.QUEUED
    # Nobody is named yet: the pool process that claims it will be.
    assert execution.supervisor == ""


def test_dispatch_ends_the_row_lost_when_the_engine_refuses_it(engine):
    engine(refuse)

    execution = start()

    execution.refresh_from_db()
    assert execution.status == Status.LOST
    assert execution.outcome["steps_not_processed"] == ["step-1", "step-2"]


def test_supervise_runs_a_queued_execution_to_its_end_in_an_execution_process(
    engine,
):
    engine(accept)
    execution = start()

    status = supervise(str(execution.id))

    execution.refresh_from_db()
    assert status == Status.SUCCEEDED
    assert execution.status == Status.SUCCEEDED
    assert execution.outcome["steps_processed"] == ["step-1", "step-2"]
    assert pid_of(execution.supervisor) == os.getpid()


def test_supervise_gives_sigterm_back_to_the_workers_handler(engine):
    engine(accept)
    execution = start(count=1)
    signal.signal(signal.SIGTERM, worker_handler)
    try:
        supervise(str(execution.id))

        assert signal.getsignal(signal.SIGTERM) is worker_handler
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_supervise_of_a_claimed_execution_changes_nothing(engine):
    engine(accept)
    execution = start()
    assert execution.claim("elsewhere:1:first")

    status = supervise(str(execution.id))

    execution.refresh_from_db()
    assert status == Status.RUNNING
    assert execution.supervisor == "elsewhere:1:first"
    assert [step["status"] for step in execution.steps] == ["pending", "pending"]
