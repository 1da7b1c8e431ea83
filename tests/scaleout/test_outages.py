"""Outages under load, with real processes: Redis killed under hundreds of
watchers, a daphne killed with runs in flight. What users need still holds:
the servers serve, interrupts land, runs end, and every watcher is told."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from executions.models import Execution
from tests.scaleout.cluster import (
    ALL_STEPS_OF_LONG_RUN,
    LONG_RUN,
    Crowd,
    Daphne,
    alive,
    answers,
    descendants,
)

pytestmark = pytest.mark.e2e

#: Redis stays down at least this long (seconds).
OUTAGE = 4


def logged_since(server: Daphne, seen: int) -> list[str]:
    """What a server logged after its first `seen` lines, access log aside."""
    return [
        line
        for line in server.process.output.splitlines()[seen:]
        if not line.startswith("127.0.0.1:")
    ]


def test_redis_killed_under_300_watchers_they_are_told_how_the_run_ended(
    cluster, session, redis_server
):
    servers = [cluster.daphne(), cluster.daphne()]
    execution_id = session.start(servers[0], "demo.steps", **LONG_RUN)["id"]
    crowd = Crowd(session, servers, execution_id, 300)
    try:
        # 2 cores for 300 handshakes, two daphnes and the run: be patient.
        crowd.wait_until(lambda member: member.count("step") > 0, 120, "live")
        before = [len(server.process.output.splitlines()) for server in servers]
        heard = [len(member.events) for member in crowd.members]

        redis_server.kill()
        down_at = time.monotonic()
        serving = [answers(server) for server in servers]
        response = session.post_json(
            servers[1], f"/api/executions/{execution_id}/interrupt/", {}
        )
        ended = session.wait_until_finished(servers[1], execution_id, timeout=30)
        time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
        redis_server.start()
        back_at = time.monotonic()
        crowd.wait_until(
            lambda member: member.status == "interrupted", 60, "told of the end"
        )
        told_in = time.monotonic() - back_at
        logged = [
            logged_since(server, seen)
            for server, seen in zip(servers, before, strict=True)
        ]
    finally:
        crowd.close()

    # The figures docs/reliability.md quotes (pytest -s shows them).
    print(f"told {told_in:.1f} s after Redis; logged {[len(x) for x in logged]}")
    assert serving == [True, True]
    assert response.status == 202
    assert ended["status"] == "interrupted"
    assert ended["interrupt"]["source"] == "api"
    assert ended["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    # The `finished` event went out while Redis was down and is lost; each
    # server noticed the gap and sent its open sockets a fresh snapshot.
    told = [
        {event["type"] for event in member.events[seen:] if "execution" in event}
        for member, seen in zip(crowd.members, heard, strict=True)
    ]
    assert all(kinds == {"snapshot"} for kinds in told), told
    assert all(member.closes == [] for member in crowd.members)
    assert crowd.errors == []
    # A few tracebacks, once each (the outage's first failure of each kind),
    # however many sockets: before, a run's pushes logged one a second.
    for lines in logged:
        assert sum("Traceback" in line for line in lines) <= 10, "\n".join(lines)
        assert len(lines) <= 200, f"{len(lines)} lines:\n" + "\n".join(lines[:50])


def test_daphne_killed_with_runs_in_flight_they_end_and_watchers_elsewhere_hear_it(
    cluster, session
):
    first, second = cluster.daphne(), cluster.daphne()
    running = session.start(first, "demo.steps", **LONG_RUN)["id"]
    # A step that ignores its checkpoints: the request stays pending.
    stopping = session.start(first, "demo.steps", **LONG_RUN, cooperative=False)["id"]
    watchers = {run: session.watch(second, run) for run in (running, stopping)}
    for watcher in watchers.values():
        watcher.step("step-1", "running")
    response = session.post_json(first, f"/api/executions/{stopping}/interrupt/", {})
    watchers[stopping].wait_for(
        lambda event: (
            event["type"] == "status"
            and event["execution"]["interrupt"]["delivered_at"] is not None
        )
    )
    family = descendants(first.process.popen.pid)

    # A server under load is behind on reading its runs' progress when it
    # dies; stopped for a moment first, it certainly is: its execution
    # processes then read a reset, not EOF, as it goes.
    first.process.signal(signal.SIGSTOP)
    time.sleep(0.5)
    first.process.signal(signal.SIGKILL)
    first.process.wait()
    serving = answers(second)
    # The other server's reaper (every 5 s, by default) sees the PID gone.
    ended = {run: watcher.finished(timeout=30) for run, watcher in watchers.items()}
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in family if alive(pid)]
    for pid in survivors:  # not left running when the test fails
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    restarted = cluster.daphne(port=first.port)
    rows = session.get_json(restarted, "/api/executions/").json()["executions"]
    again = session.start(restarted, "demo.steps", count=1, seconds=0.1, ticks=1)
    finished_again = session.wait_until_finished(restarted, again["id"])

    assert response.status == 202
    # The forkserver and an execution process per run, all gone with it.
    assert len(family) >= 3
    assert survivors == []
    assert serving
    assert ended[running]["status"] == "lost"
    assert ended[running]["outcome"]["kind"] == "lost"
    assert ended[running]["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    assert ended[running]["steps"][0]["error"] == (
        "lost: its supervisor stopped heartbeating"
    )
    # A pending interrupt is what happened, if not cleanly.
    assert ended[stopping]["status"] == "interrupted"
    assert ended[stopping]["interrupt"]["source"] == "api"
    assert ended[stopping]["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    assert {row["id"]: row["status"] for row in rows} == {
        running: "lost",
        stopping: "interrupted",
    }
    assert not Execution.objects.active().exists()
    assert finished_again["status"] == "succeeded"
