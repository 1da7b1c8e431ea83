"""Executions on `runworker executions` processes, started, watched and
interrupted through daphne servers that share one Redis."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from executions.models import Execution
from executions.runtime import groups
from executions.runtime.supervisor import SHUTDOWN_REASON
from tests.processes import alive, descendants
from tests.scaleout.cluster import (
    ALL_STEPS_OF_LONG_RUN,
    LONG_RUN,
    PUSH_BOUND,
    SLOW_POLL,
    layer_channel,
    runner_pid,
)

pytestmark = pytest.mark.e2e


def test_worker_run_interrupted_on_one_server_stops_by_push_and_both_report(
    cluster, session, redis_server
):
    first = cluster.daphne(EXECUTIONS_RUNNER="worker")
    second = cluster.daphne(EXECUTIONS_RUNNER="worker")
    worker = cluster.worker(EXECUTIONS_POLL_INTERVAL=str(SLOW_POLL))
    execution_id = session.start(first, "demo.steps", **LONG_RUN)["id"]
    watchers = [session.watch(first, execution_id), session.watch(second, execution_id)]
    watchers[1].step("step-1", "running")
    redis_server.wait_for_runner(execution_id)

    response = session.post_json(
        first, f"/api/executions/{execution_id}/interrupt/", {}
    )
    reports = [watcher.finished() for watcher in watchers]

    assert response.status == 202
    assert response.json()["status"] == "interrupting"
    execution = Execution.objects.get(pk=execution_id)
    assert runner_pid(execution.supervisor) == worker.popen.pid
    assert execution.finished_at - execution.interrupt_requested_at < PUSH_BOUND
    # Its only poll was at its start: the request came later.
    assert execution.finished_at - execution.started_at < timedelta(seconds=SLOW_POLL)
    assert reports[0] == reports[1]
    assert reports[0]["status"] == "interrupted"
    assert reports[0]["interrupt"]["source"] == "api"
    assert reports[0]["interrupt"]["by"] == session.user.username
    assert reports[0]["outcome"] == {
        "kind": "interrupted",
        "steps_processed": [],
        "steps_not_processed": ALL_STEPS_OF_LONG_RUN,
        "errors": {},
    }
    statuses = [step["status"] for step in reports[0]["steps"]]
    assert statuses == ["interrupted", "skipped", "skipped"]


def test_the_execution_process_hears_its_control_group_while_its_worker_is_frozen(
    cluster, session, redis_server
):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker")
    worker = cluster.worker(EXECUTIONS_POLL_INTERVAL=str(SLOW_POLL))
    execution_id = session.start(server, "demo.steps", **LONG_RUN)["id"]
    watcher = session.watch(server, execution_id)
    watcher.step("step-1", "running")
    # Its supervisor, and the execution process itself.
    control = layer_channel(groups.control_group(execution_id))
    redis_server.wait_for_subscribers(control, count=2)
    family = descendants(worker.popen.pid)  # the forkserver and the run's process

    worker.popen.send_signal(signal.SIGSTOP)  # it can neither relay nor poll
    try:
        response = session.post_json(
            server, f"/api/executions/{execution_id}/interrupt/", {}
        )
        deadline = time.monotonic() + 10
        while all(alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.02)
        ended_while_frozen = [pid for pid in family if not alive(pid)]
    finally:
        worker.popen.send_signal(signal.SIGCONT)
    report = watcher.finished()

    assert response.status == 202
    assert ended_while_frozen, "the execution process waited for its supervisor"
    assert report["status"] == "interrupted"
    assert report["interrupt"]["source"] == "api"
    # Its acknowledgement waited in the socket for the supervisor to wake.
    assert report["interrupt"]["delivered_at"] is not None
    assert [step["status"] for step in report["steps"]] == [
        "interrupted",
        "skipped",
        "skipped",
    ]


def test_two_workers_take_two_executions_started_at_once_one_each(cluster, session):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker")
    workers = [cluster.worker(), cluster.worker()]
    listing = session.watch(server)

    ids = [
        session.start(server, "demo.steps", count=2, seconds=1, ticks=5)["id"]
        for _ in workers
    ]
    for _ in ids:
        listing.wait_for(lambda event: event["type"] == "finished")

    executions = [Execution.objects.get(pk=execution_id) for execution_id in ids]
    assert {runner_pid(execution.supervisor) for execution in executions} == {
        worker.popen.pid for worker in workers
    }
    for execution in executions:
        assert execution.status == "succeeded"
        assert execution.outcome["steps_processed"] == ["step-1", "step-2"]
        changes = [
            (event["type"], event["execution"]["status"])
            for event in listing.events[1:]
            if event["execution"]["id"] == str(execution.id)
        ]
        assert changes == [
            ("created", "queued"),
            ("status", "running"),
            ("finished", "succeeded"),
        ]


def test_worker_stopped_with_sigterm_interrupts_its_run_as_shutdown(cluster, session):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker")
    worker = cluster.worker()
    execution_id = session.start(server, "demo.steps", **LONG_RUN)["id"]
    watcher = session.watch(server, execution_id)
    watcher.step("step-1", "running")

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
