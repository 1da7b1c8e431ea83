"""Faults with real processes: a worker killed outright, Redis restarted or
down mid-run. Nothing stays stuck, no interrupt is lost, and pushes resume."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from executions.models import Execution
from tests.scaleout.cluster import (
    ALL_STEPS_OF_LONG_RUN,
    LONG_RUN,
    PUSH_BOUND,
    SLOW_POLL,
    runner_pid,
)

pytestmark = pytest.mark.e2e

#: Heartbeat often, count a runner gone after 3 s (the defaults: 2 s, 15 s).
REAP_QUICKLY = {
    "EXECUTIONS_HEARTBEAT_INTERVAL": "0.5",
    "EXECUTIONS_HEARTBEAT_TIMEOUT": "3",
}


@pytest.mark.parametrize(
    ("server_env", "workers"),
    [
        pytest.param(REAP_QUICKLY, 1, id="reaped-by-daphne"),
        # daphne keeps the 15 s default, beyond the wait below: the surviving
        # worker must be the one that reaps.
        pytest.param({}, 2, id="reaped-by-another-worker"),
    ],
)
def test_worker_killed_mid_run_ends_it_lost_and_watchers_are_told(
    cluster, session, server_env, workers
):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker", **server_env)
    running = [cluster.worker(**REAP_QUICKLY) for _ in range(workers)]
    execution_id = session.start(server, "demo.steps", **LONG_RUN)["id"]
    watcher = session.watch(server, execution_id)
    watcher.step("step-1", "running")
    pid = runner_pid(Execution.objects.get(pk=execution_id).supervisor)
    victim = next(worker for worker in running if worker.popen.pid == pid)

    victim.signal(signal.SIGKILL)
    report = watcher.finished(timeout=12)

    assert report["status"] == "lost"
    assert report["interrupt"] is None
    assert report["outcome"]["kind"] == "lost"
    assert report["outcome"]["steps_processed"] == []
    assert report["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    assert report["steps"][0]["status"] == "interrupted"
    assert report["steps"][0]["error"] == "lost: its supervisor stopped heartbeating"
    assert [step["status"] for step in report["steps"][1:]] == ["skipped", "skipped"]


def test_redis_restarted_mid_run_the_run_continues_and_succeeds(
    cluster, session, redis_server
):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker")
    cluster.worker()
    execution_id = session.start(server, "demo.steps", count=3, seconds=1, ticks=10)[
        "id"
    ]
    watcher = session.watch(server, execution_id)
    watcher.step("step-1", "running")

    redis_server.restart()
    report = watcher.finished(timeout=15)

    assert report["status"] == "succeeded"
    assert report["outcome"]["steps_processed"] == ["step-1", "step-2", "step-3"]
    assert [step["progress"]["done"] for step in report["steps"]] == [10, 10, 10]


def test_interrupt_sent_while_redis_is_down_still_lands(cluster, session, redis_server):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker")
    cluster.worker(EXECUTIONS_POLL_INTERVAL="0.5")
    execution_id = session.start(server, "demo.steps", **LONG_RUN)["id"]
    session.watch(server, execution_id).step("step-1", "running")
    redis_server.stop()

    response = session.post_json(
        server, f"/api/executions/{execution_id}/interrupt/", {}
    )
    snapshot = session.wait_until_finished(server, execution_id)

    assert response.status == 202
    assert snapshot["status"] == "interrupted"
    assert snapshot["interrupt"]["source"] == "api"
    assert snapshot["outcome"]["steps_processed"] == []
    assert snapshot["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN


def test_after_redis_restarts_interrupts_are_pushed_again(
    cluster, session, redis_server
):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker")
    # On the pub/sub layer redis-py re-subscribes as it reconnects (this
    # passes with re-joins 600 s apart too); the runner's own re-join is what
    # a layer that forgets groups relies on, so it is kept short here as well.
    cluster.worker(
        EXECUTIONS_POLL_INTERVAL=str(SLOW_POLL), EXECUTIONS_REJOIN_INTERVAL="1"
    )
    execution_id = session.start(server, "demo.steps", **LONG_RUN)["id"]
    session.watch(server, execution_id).step("step-1", "running")
    redis_server.wait_for_runner(execution_id)
    redis_server.restart()
    redis_server.wait_for_runner(execution_id)

    response = session.post_json(
        server, f"/api/executions/{execution_id}/interrupt/", {}
    )
    snapshot = session.wait_until_finished(server, execution_id)

    assert response.status == 202
    assert snapshot["status"] == "interrupted"
    assert snapshot["interrupt"]["source"] == "api"
    execution = Execution.objects.get(pk=execution_id)
    assert execution.finished_at - execution.interrupt_requested_at < PUSH_BOUND
    # Its only poll was at its start: the request came later.
    assert execution.finished_at - execution.started_at < timedelta(seconds=SLOW_POLL)


def test_a_redis_outage_writes_a_few_log_lines_not_thousands(
    cluster, session, redis_server
):
    server = cluster.daphne(EXECUTIONS_RUNNER="worker")
    worker = cluster.worker()
    execution_id = session.start(server, "demo.steps", count=2, seconds=6, ticks=120)[
        "id"
    ]
    session.watch(server, execution_id).step("step-1", "running")
    processes = [worker, server.process]
    before = [len(process.output.splitlines()) for process in processes]

    redis_server.stop()
    time.sleep(5)  # the outage: every push and every group join fails
    redis_server.start()
    snapshot = session.wait_until_finished(server, execution_id, timeout=30)

    during = [
        line
        for process, seen in zip(processes, before, strict=True)
        for line in process.output.splitlines()[seen:]
        if '"GET ' not in line and "WSCONNECT" not in line
    ]
    assert snapshot["status"] == "succeeded"
    # Before: 5,100 lines and 219 tracebacks for a 5 s outage.
    assert sum("Traceback" in line for line in during) <= 20, "\n".join(during)
    assert len(during) <= 200, f"{len(during)} lines:\n" + "\n".join(during[:50])
