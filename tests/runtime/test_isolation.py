"""Execution processes, for real: user code that hogs a core, blocks, ignores
interrupts or kills its process never stalls or harms the server, and force
stops what ignores it (real daphne, the embedded default)."""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest

from executions.conf import conf
from executions.models import Execution, Status
from tests.processes import alive, descendants

pytestmark = pytest.mark.e2e

#: Generous, to catch a stalled server, not to time it (benchmarks do that).
STALLED = 2.0


def wait_for_status(session, server, execution_id, statuses, timeout=20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        snapshot = session.get_json(server, f"/api/executions/{execution_id}/").json()
        if snapshot["status"] in statuses:
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"still {snapshot['status']} after {timeout}s")
        time.sleep(0.05)


def wait_for_step(session, server, execution_id, status="running", timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        snapshot = session.get_json(server, f"/api/executions/{execution_id}/").json()
        if any(step["status"] == status for step in snapshot["steps"]):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"no step {status} after {timeout}s: {snapshot}")
        time.sleep(0.05)


def test_api_answers_while_steps_hog_a_core_and_block(processes, session):
    server = processes.daphne()
    started = [
        session.start(server, "faulty.cpu", seconds=60),
        session.start(server, "faulty.cpu", seconds=60),
        session.start(server, "faulty.block", seconds=60),
        session.start(server, "demo.steps", count=1000, seconds=0, ticks=100000),
    ]
    for snapshot in started:
        wait_for_step(session, server, snapshot["id"])

    answers = []
    for _ in range(20):
        began = time.monotonic()
        response = session.get_json(server, "/api/executions/")
        answers.append(time.monotonic() - began)
        assert response.status == 200
    interrupt = time.monotonic()
    response = session.post_json(
        server, f"/api/executions/{started[0]['id']}/interrupt/", {}
    )

    assert response.status == 202
    assert time.monotonic() - interrupt < STALLED
    assert statistics.median(answers) < STALLED, answers
    for snapshot in started:
        session.post_json(
            server, f"/api/executions/{snapshot['id']}/interrupt/", {"force": True}
        )
    for snapshot in started:
        wait_for_status(session, server, snapshot["id"], {Status.INTERRUPTED})


def test_force_stops_a_def_step_before_it_writes(processes, session, tmp_path):
    server = processes.daphne()
    target = tmp_path / "late.txt"
    started = session.start(server, "faulty.write_later", path=str(target), delay=4)
    wait_for_step(session, server, started["id"])

    response = session.post_json(
        server, f"/api/executions/{started['id']}/interrupt/", {"force": True}
    )
    ended = wait_for_status(session, server, started["id"], {Status.INTERRUPTED})
    time.sleep(5)  # past the moment the step would have written

    assert response.status == 202
    assert not target.exists()
    step = ended["steps"][0]
    assert step["status"] == "interrupted"
    assert step["error"] == "forced: stopped with its execution process"
    assert ended["interrupt"]["force"] is True
    assert ended["interrupt"]["delivered_at"] is not None


def test_execution_processes_run_below_the_servers_cpu_priority(
    processes, session, tmp_path
):
    server = processes.daphne()
    target = tmp_path / "niceness.txt"
    started = session.start(server, "faulty.niceness", path=str(target))

    wait_for_status(session, server, started["id"], {Status.SUCCEEDED})

    own = os.getpriority(os.PRIO_PROCESS, server.process.popen.pid)
    assert int(target.read_text()) == min(19, own + conf.EXECUTION_NICE) > own


@pytest.mark.parametrize(
    ("cmd", "error"),
    [
        (
            "faulty.exit",
            "the execution process exited with code 3 before the run ended",
        ),
        (
            "faulty.segfault",
            "the execution process was killed by SIGSEGV (a segmentation fault)",
        ),
    ],
)
def test_a_step_that_kills_its_process_fails_the_run_not_the_server(
    processes, session, cmd, error
):
    server = processes.daphne()
    started = session.start(server, cmd)

    ended = wait_for_status(session, server, started["id"], {Status.FAILED})

    assert ended["outcome"]["errors"] == {ended["steps"][0]["id"]: error}
    assert ended["steps"][0]["status"] == "failed"
    assert server.process.popen.poll() is None
    assert session.get_json(server, "/api/executions/").status == 200
    again = session.start(server, "demo.steps", count=1, seconds=0)
    assert wait_for_status(session, server, again["id"], {Status.SUCCEEDED})


def test_timeout_then_force_after_end_a_deaf_run(processes, session):
    server = processes.daphne()
    response = session.post_json(
        server,
        "/api/executions/",
        {
            "cmd": "faulty.block",
            "params": {"seconds": 60},
            "timeout": 1,
            "force_after": 1,
        },
    )
    started = response.json()

    ended = wait_for_status(session, server, started["id"], {Status.INTERRUPTED})

    assert response.status == 201
    assert (started["timeout"], started["force_after"]) == (1, 1)
    requests = ended["interrupt"]["requests"]
    assert [(r["source"], r["force"]) for r in requests] == [
        ("timeout", False),
        ("timeout", True),
    ]
    assert requests[0]["reason"] == "timed out after 1 s"
    assert ended["steps"][0]["status"] == "interrupted"


@pytest.mark.parametrize("runs", [1, 4])
def test_daphne_killed_leaves_no_process_and_its_restart_reaps_without_a_request(
    processes, session, runs
):
    server = processes.daphne()
    started = [
        session.start(server, "demo.steps", count=2, seconds=60) for _ in range(runs)
    ]
    watchers = [session.watch(server, snapshot["id"]) for snapshot in started]
    for watcher in watchers:
        watcher.step("step-1", "running")
    family = descendants(server.process.popen.pid)

    server.process.popen.send_signal(signal.SIGKILL)
    server.process.popen.wait()
    processes.daphne(port=server.port)  # no request reaches it below
    deadline = time.monotonic() + 20
    rows = list(Execution.objects.filter(pk__in=[s["id"] for s in started]))
    while any(row.status not in (Status.LOST, Status.FAILED) for row in rows):
        assert time.monotonic() < deadline, [row.status for row in rows]
        time.sleep(0.1)
        for row in rows:
            row.refresh_from_db()

    assert [row.status for row in rows] == [Status.LOST] * runs
    assert all(row.outcome["kind"] == "lost" for row in rows)
    assert len(family) > runs  # the forkserver and an execution process each
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in family if alive(pid)], "outlived their server"
