"""Outages under load, with real processes: Redis killed under hundreds of
watchers, a daphne killed with runs in flight. What users need still holds:
the servers serve, interrupts land, runs end, and every watcher is told."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from executions.models import Execution
from tests.processes import alive, descendants
from tests.scaleout.cluster import (
    ALL_STEPS_OF_LONG_RUN,
    LONG_RUN,
    Crowd,
    Daphne,
    RedisServer,
    Response,
    Session,
)

pytestmark = pytest.mark.e2e

#: Redis stays down at least this long (seconds).
OUTAGE = 4
#: Sockets on one run, spread over two daphnes.
WATCHERS = 300


@dataclass
class Outage:
    """What users saw while Redis was down, and from where to read on."""

    serving: list[bool]
    response: Response
    snapshot: dict
    back_at: float
    log_lines: list[int]
    heard: list[int]


def interrupt_during_an_outage(
    session: Session,
    servers: list[Daphne],
    redis_server: RedisServer,
    crowd: Crowd,
    execution_id: str,
    landed: Callable[[dict], bool],
) -> Outage:
    """SIGKILL Redis; while it is down, ask whether the servers serve,
    interrupt the run through the API and wait until its snapshot shows that
    `landed`; start Redis again (on the same port, empty) after OUTAGE s."""
    log_lines = [len(server.process.output.splitlines()) for server in servers]
    heard = [len(member.events) for member in crowd.members]
    redis_server.kill()
    down_at = time.monotonic()
    path = f"/api/executions/{execution_id}/"
    # Served, if slowly: the machine is shared and 300 sockets are open.
    serving = [session.get_json(server, path).status == 200 for server in servers]
    response = session.post_json(servers[1], path + "interrupt/", {})
    deadline = time.monotonic() + 30
    while not landed(snapshot := session.get_json(servers[1], path).json()):
        assert time.monotonic() < deadline, snapshot
        time.sleep(0.1)
    time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
    redis_server.start()
    return Outage(serving, response, snapshot, time.monotonic(), log_lines, heard)


def told_since(crowd: Crowd, outage: Outage) -> list[set[str]]:
    """For each watcher, the kinds of execution-wide events it has heard
    since Redis went down (step events aside)."""
    return [
        {event["type"] for event in member.events[seen:] if "execution" in event}
        for member, seen in zip(crowd.members, outage.heard, strict=True)
    ]


def assert_log_bounded(servers: list[Daphne], outage: Outage) -> None:
    """A few lines per server about the outage, whatever the sockets: the
    first failure of each kind with its traceback, then a line a while."""
    for server, seen in zip(servers, outage.log_lines, strict=True):
        lines = [
            line
            for line in server.process.output.splitlines()[seen:]
            if not line.startswith("127.0.0.1:")  # the access log
        ]
        print(f"{len(lines)} lines logged")  # the figure docs/reliability.md quotes
        assert sum("Traceback" in line for line in lines) <= 10, "\n".join(lines)
        assert len(lines) <= 200, f"{len(lines)} lines:\n" + "\n".join(lines[:50])


def test_redis_killed_under_300_watchers_ended_meanwhile_they_resync(
    cluster, session, redis_server
):
    servers = [cluster.daphne(), cluster.daphne()]
    execution_id = session.start(servers[0], "demo.steps", **LONG_RUN)["id"]
    crowd = Crowd(session, servers, execution_id, WATCHERS)
    try:
        # 2 cores for 300 handshakes, two daphnes and the run: be patient.
        crowd.wait_until(lambda member: member.count("step") > 0, 120, "live")

        outage = interrupt_during_an_outage(
            session,
            servers,
            redis_server,
            crowd,
            execution_id,
            lambda snapshot: snapshot["status"] == "interrupted",
        )
        crowd.wait_until(
            lambda member: member.status == "interrupted", 60, "told of the end"
        )
        print(f"all told {time.monotonic() - outage.back_at:.1f} s after Redis")
    finally:
        crowd.close()

    assert outage.serving == [True, True]
    assert outage.response.status == 202
    ended = outage.snapshot
    assert ended["interrupt"]["source"] == "api"
    assert ended["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN
    # The `finished` event went out while Redis was down and is lost; each
    # server noticed the gap and sent its open sockets a fresh snapshot.
    told = told_since(crowd, outage)
    assert all(kinds == {"snapshot"} for kinds in told), told
    assert all(member.closes == [] for member in crowd.members)
    assert crowd.errors == []
    assert_log_bounded(servers, outage)


def test_redis_killed_under_300_watchers_they_hear_the_end_after_it(
    cluster, session, redis_server
):
    # A worker runs it, started once the crowd is in: the step's time is
    # not spent waiting for 300 handshakes.
    servers = [cluster.daphne(EXECUTIONS_RUNNER="worker") for _ in range(2)]
    # Its first step ignores checkpoints and outlasts the outage: the
    # interrupt lands during it, the run ends once Redis is back.
    run = {"count": 3, "seconds": 20, "ticks": 200, "cooperative": False}
    execution_id = session.start(servers[0], "demo.steps", **run)["id"]
    crowd = Crowd(session, servers, execution_id, WATCHERS)
    try:
        crowd.wait_until(lambda member: member.status == "queued", 120, "in")
        cluster.worker()
        crowd.wait_until(lambda member: member.count("step") > 0, 60, "live")

        outage = interrupt_during_an_outage(
            session,
            servers,
            redis_server,
            crowd,
            execution_id,
            lambda snapshot: snapshot["interrupt"]["delivered_at"] is not None,
        )
        crowd.wait_until(lambda member: member.status == "interrupting", 60, "resynced")
        crowd.wait_until(
            lambda member: member.count("finished") > 0, 60, "told of the end"
        )
        print(f"all resynced, then told {time.monotonic() - outage.back_at:.1f} s")
    finally:
        crowd.close()

    assert outage.serving == [True, True]
    assert outage.response.status == 202
    assert outage.snapshot["status"] == "interrupting"
    assert outage.snapshot["interrupt"]["source"] == "api"
    for member in crowd.members:
        end = next(e for e in member.events if e["type"] == "finished")["execution"]
        assert end["status"] == "interrupted"
        assert end["outcome"]["steps_processed"] == ["step-1"]
        assert end["outcome"]["steps_not_processed"] == ["step-2", "step-3"]
    # Resynced after the gap, then live again.
    assert all({"snapshot", "finished"} <= kinds for kinds in told_since(crowd, outage))
    assert all(member.closes == [] for member in crowd.members)
    assert crowd.errors == []
    assert_log_bounded(servers, outage)


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
            and (event["execution"]["interrupt"] or {}).get("delivered_at")
        )
    )
    family = descendants(first.process.popen.pid)

    # A server under load is behind on reading its runs' progress when it
    # dies; stopped for a moment first, it certainly is: its execution
    # processes then read a reset, not EOF, as it goes.
    first.process.signal(signal.SIGSTOP)
    time.sleep(0.5)
    first.process.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.process.wait()
    serving = session.get_json(second, "/api/executions/").status == 200
    # The other server's reaper (every 5 s, by default) sees the PID gone.
    ended = {run: watcher.finished(timeout=30) for run, watcher in watchers.items()}
    print(f"watchers elsewhere told {time.monotonic() - killed_at:.1f} s after")
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
