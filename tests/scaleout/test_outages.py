"""Outages under load, with real processes: Redis killed under hundreds of
watchers, a daphne killed with runs in flight. What users need still holds:
the servers serve, interrupts land, runs end, and every watcher is told."""

from __future__ import annotations

import time

import pytest

from tests.scaleout.cluster import (
    ALL_STEPS_OF_LONG_RUN,
    LONG_RUN,
    Crowd,
    Daphne,
    answers,
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
