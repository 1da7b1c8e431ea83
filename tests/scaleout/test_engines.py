"""Executions on the engines (`EXECUTIONS_RUNNER=celery` and `tasks`): a
real Celery worker (prefork pool) on Redis, and django-tasks-db's
`db_worker` on the test database (`make test-postgres`: PostgreSQL).
Started from the API, interrupted from every door by push, forced, killed
and stopped: the same runtime whatever the engine."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from executions.models import Execution
from executions.runtime.supervisor import SHUTDOWN_REASON
from tests.processes import Process
from tests.scaleout.cluster import (
    ALL_STEPS_OF_LONG_RUN,
    LONG_RUN,
    PUSH_BOUND,
    SLOW_POLL,
    Cluster,
    Daphne,
    Session,
    Watcher,
    runner_pid,
)

pytestmark = pytest.mark.e2e

#: Heartbeat often, count a runner gone after 3 s (the defaults: 2 s, 15 s).
REAP_QUICKLY = {
    "EXECUTIONS_HEARTBEAT_INTERVAL": "0.5",
    "EXECUTIONS_HEARTBEAT_TIMEOUT": "3",
}
FORCE_GRACE = 1.0
SHUTDOWN_GRACE = 2.0
#: Steps that never look at the interrupt: only force stops them.
STUBBORN_RUN = {**LONG_RUN, "cooperative": False}
CHANGELIST = "/admin/executions/execution/"
ENGINES = {"celery": "celery", "tasks": "django_tasks_db"}


@dataclass
class Engine:
    """One engine: the runner name servers hand executions to, and how to
    start one of its workers."""

    runner: str
    start_worker: Callable[..., Process]

    @property
    def pool(self) -> bool:
        """Whether runs happen in pool processes of the worker, not in it."""
        return self.runner == "celery"


def require(package: str) -> None:
    """Skip without `package`; under CI, fail: a missing engine is a defect
    of the environment, not a reason to pass."""
    if importlib.util.find_spec(package) is None:
        message = f"{package} is missing: pip install -r requirements.txt"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=list(ENGINES))
def engine(request, cluster: Cluster) -> Engine:
    require(ENGINES[request.param])
    if request.param == "celery":
        return Engine("celery", cluster.celery_worker)
    return Engine("tasks", cluster.db_worker)


def start(session: Session, server: Daphne, **params) -> tuple[str, Watcher]:
    """Start demo.steps through the API and wait for its first step to run:
    its ID, and a watcher of it."""
    began = time.monotonic()
    execution_id = session.start(server, "demo.steps", **params)["id"]
    watcher = session.watch(server, execution_id)
    watcher.step("step-1", "running", timeout=30)
    latency = time.monotonic() - began
    row = Execution.objects.get(pk=execution_id)
    # pytest shows what a test printed only when it failed (or with -s).
    print(
        f"API POST -> step-1 running seen: {latency * 1000:.0f} ms; "
        f"row created -> claimed: "
        f"{(row.started_at - row.created_at).total_seconds() * 1000:.0f} ms"
    )
    return execution_id, watcher


def wait_for_row(
    execution_id: str, predicate: Callable[[Execution], bool], timeout: float = 10
) -> Execution:
    """The row, once `predicate` holds for it (progress reaches the database
    in batches, after the watchers have seen it)."""
    deadline = time.monotonic() + timeout
    while not predicate(execution := Execution.objects.get(pk=execution_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"not so within {timeout}s: {execution.steps}")
        time.sleep(0.05)
    return execution


def interrupt_by_admin(session: Session, server: Daphne, cluster, execution_id):
    response = session.post_form(
        server,
        CHANGELIST,
        {"action": "interrupt_selected", "_selected_action": [execution_id]},
    )
    assert response.status == 302, response.body


def interrupt_by_terminal(session: Session, server: Daphne, cluster, execution_id):
    assert cluster.manage("interrupt", execution_id).wait() == 0


def test_engine_run_interrupted_from_the_api_stops_by_push_and_is_acknowledged(
    engine, cluster, session, redis_server
):
    server = cluster.daphne(EXECUTIONS_RUNNER=engine.runner)
    worker = engine.start_worker(EXECUTIONS_POLL_INTERVAL=str(SLOW_POLL))
    execution_id, watcher = start(session, server, **LONG_RUN)
    redis_server.wait_for_runner(execution_id)

    response = session.post_json(
        server, f"/api/executions/{execution_id}/interrupt/", {}
    )
    report = watcher.finished()

    assert response.status == 202
    assert response.json()["status"] == "interrupting"
    assert report["status"] == "interrupted"
    assert report["interrupt"]["source"] == "api"
    assert report["interrupt"]["delivered_at"] is not None
    assert report["outcome"] == {
        "kind": "interrupted",
        "steps_processed": [],
        "steps_not_processed": ALL_STEPS_OF_LONG_RUN,
        "errors": {},
    }
    execution = Execution.objects.get(pk=execution_id)
    pid = runner_pid(execution.supervisor)
    assert (pid != worker.popen.pid) if engine.pool else (pid == worker.popen.pid)
    assert execution.finished_at - execution.interrupt_requested_at < PUSH_BOUND
    # Its only poll was at its start: the request came later.
    assert execution.finished_at - execution.started_at < timedelta(seconds=SLOW_POLL)


@pytest.mark.parametrize(
    ("interrupt", "source"),
    [
        pytest.param(interrupt_by_admin, "admin", id="admin"),
        pytest.param(interrupt_by_terminal, "cli", id="terminal"),
    ],
)
def test_engine_run_interrupted_from_another_door_stops_by_push(
    engine, cluster, session, redis_server, interrupt, source
):
    server = cluster.daphne(EXECUTIONS_RUNNER=engine.runner)
    engine.start_worker(EXECUTIONS_POLL_INTERVAL=str(SLOW_POLL))
    execution_id, watcher = start(session, server, **LONG_RUN)
    redis_server.wait_for_runner(execution_id)

    interrupt(session, server, cluster, execution_id)
    report = watcher.finished()

    assert report["status"] == "interrupted"
    assert report["interrupt"]["source"] == source
    assert report["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    execution = Execution.objects.get(pk=execution_id)
    assert execution.finished_at - execution.interrupt_requested_at < PUSH_BOUND


def test_engine_run_that_ignores_interrupts_is_forced_and_nothing_runs_after(
    engine, cluster, session
):
    server = cluster.daphne(EXECUTIONS_RUNNER=engine.runner)
    engine.start_worker(EXECUTIONS_FORCE_GRACE=str(FORCE_GRACE))
    execution_id, watcher = start(session, server, **STUBBORN_RUN)

    began = time.monotonic()
    response = session.post_json(
        server, f"/api/executions/{execution_id}/interrupt/", {"force": True}
    )
    report = watcher.finished(timeout=FORCE_GRACE + 5)
    took = time.monotonic() - began

    assert response.status == 202
    assert took < FORCE_GRACE + 5
    assert report["status"] == "interrupted"
    assert report["interrupt"]["force"] is True
    assert report["outcome"]["steps_processed"] == []
    assert [step["status"] for step in report["steps"]] == [
        "interrupted",
        "skipped",
        "skipped",
    ]
    # A step still running would move its progress on the row, or start the
    # next step: a few of its ticks later, the row is as it was reported.
    time.sleep(0.5)
    assert Execution.objects.get(pk=execution_id).steps == report["steps"]
    started = {
        event["step"]["id"]
        for event in watcher.events
        if event["type"] == "step" and event["step"]["status"] == "running"
    }
    assert started == {"step-1"}


def test_engine_worker_killed_mid_run_ends_it_lost(engine, cluster, session):
    server = cluster.daphne(EXECUTIONS_RUNNER=engine.runner, **REAP_QUICKLY)
    worker = engine.start_worker(**REAP_QUICKLY)
    execution_id, watcher = start(session, server, **LONG_RUN)
    wait_for_row(execution_id, lambda row: row.steps[0]["status"] == "running")

    worker.signal(signal.SIGKILL)
    report = watcher.finished(timeout=12)

    assert report["status"] == "lost"
    assert report["interrupt"] is None
    assert report["outcome"]["steps_processed"] == []
    assert report["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    assert report["steps"][0]["status"] == "interrupted"
    assert report["steps"][0]["error"] == "lost: its supervisor stopped heartbeating"


def test_engine_worker_stopped_with_sigterm_interrupts_its_run_as_shutdown(
    engine, cluster, session
):
    server = cluster.daphne(EXECUTIONS_RUNNER=engine.runner)
    worker = engine.start_worker()
    execution_id, watcher = start(session, server, **LONG_RUN)

    worker.signal(signal.SIGTERM)
    report = watcher.finished()
    code = worker.wait(timeout=20)

    assert code == 0
    assert report["status"] == "interrupted"
    assert report["interrupt"]["source"] == "shutdown"
    assert report["interrupt"]["reason"] == SHUTDOWN_REASON
    assert report["interrupt"]["force"] is False
    assert report["outcome"]["steps_processed"] == []
    assert report["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    assert report["steps"][0]["status"] == "interrupted"


def test_celery_task_delivered_three_times_runs_the_execution_once(
    cluster, session, redis_server
):
    require("celery")
    from celery import Celery

    server = cluster.daphne(EXECUTIONS_RUNNER="celery")
    worker = cluster.celery_worker()
    listing = session.watch(server)
    broker = Celery(broker=redis_server.url)

    execution_id = session.start(server, "demo.steps", count=2, seconds=0.5)["id"]
    for _ in range(2):
        broker.send_task("executions.run", args=[execution_id])
    listing.wait_for(
        lambda event: (
            event["type"] == "finished" and event["execution"]["id"] == execution_id
        )
    )
    deadline = time.monotonic() + 10
    while worker.output.count("] succeeded in ") < 3:
        assert time.monotonic() < deadline, worker.output
        time.sleep(0.05)

    changes = [
        (event["type"], event["execution"]["status"])
        for event in listing.events[1:]
        if event["execution"]["id"] == execution_id
    ]
    assert changes == [
        ("created", "queued"),
        ("status", "running"),
        ("finished", "succeeded"),
    ]
    execution = Execution.objects.get(pk=execution_id)
    assert execution.outcome["steps_processed"] == ["step-1", "step-2"]


def test_celery_pool_process_killed_mid_run_ends_it_lost_and_is_not_rerun(
    cluster, session
):
    require("celery")
    server = cluster.daphne(EXECUTIONS_RUNNER="celery", **REAP_QUICKLY)
    worker = cluster.celery_worker(**REAP_QUICKLY)
    execution_id, watcher = start(session, server, **LONG_RUN)
    row = wait_for_row(execution_id, lambda row: row.steps[0]["status"] == "running")

    # What the kernel's OOM killer would do: the worker lives on, and
    # re-queues the task (reject_on_worker_lost); its new delivery finds the
    # row claimed.
    os.kill(runner_pid(row.supervisor), signal.SIGKILL)
    report = watcher.finished(timeout=12)

    assert report["status"] == "lost"
    assert report["outcome"]["steps_processed"] == []
    assert worker.popen.poll() is None
    # The killed delivery never succeeded: this is the re-queued one.
    worker.wait_for("] succeeded in ", timeout=10)
    assert Execution.objects.get(pk=execution_id).status == "lost"
    assert [event for event in watcher.events if event["type"] == "finished"] == [
        watcher.events[-1]
    ]


def test_celery_worker_and_its_pool_sent_sigterm_at_once_drain_with_grace(
    cluster, session
):
    require("celery")
    server = cluster.daphne(EXECUTIONS_RUNNER="celery")
    worker = cluster.celery_worker(EXECUTIONS_SHUTDOWN_GRACE=str(SHUTDOWN_GRACE))
    execution_id, watcher = start(session, server, **STUBBORN_RUN)
    pool_process = runner_pid(Execution.objects.get(pk=execution_id).supervisor)

    # systemd's default KillMode sends SIGTERM to every process of the
    # service: the pool process hears it twice, from systemd and from its
    # worker (apart: two pending SIGTERMs would be delivered as one).
    os.kill(pool_process, signal.SIGTERM)
    wait_for_row(execution_id, lambda row: row.interrupt_requested_at is not None)
    worker.signal(signal.SIGTERM)
    worker.wait_for("Warm shutdown")
    report = watcher.finished(timeout=SHUTDOWN_GRACE + 10)

    assert worker.wait(timeout=20) == 0
    assert report["status"] == "interrupted"
    requests = report["interrupt"]["requests"]
    assert [(r["source"], r["force"]) for r in requests] == [
        ("shutdown", False),
        ("shutdown", True),
    ]
    # Forced by the grace running out, not by the second SIGTERM.
    asked, forced = (datetime.fromisoformat(r["at"]) for r in requests)
    assert forced - asked >= timedelta(seconds=SHUTDOWN_GRACE * 0.9)
