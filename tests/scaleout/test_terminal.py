"""`manage.py execute` in its own terminal process, on Redis: interrupted
from a server's API or admin at push latency, watched live from a browser's
websocket on daphne."""

from __future__ import annotations

from datetime import timedelta

import pytest

from executions.models import Execution, Source
from tests.scaleout.cluster import (
    ALL_STEPS_OF_LONG_RUN,
    LONG_RUN,
    PUSH_BOUND,
    SLOW_POLL,
    Daphne,
    Response,
    Session,
)

pytestmark = pytest.mark.e2e

CHANGELIST = "/admin/executions/execution/"


def demo_steps(**params) -> list[str]:
    """`execute` arguments for a demo.steps run with these params."""
    return [
        "demo.steps",
        *[
            arg
            for name, value in params.items()
            for arg in ("--param", f"{name}={value}")
        ],
    ]


def interrupt_by_api(session: Session, server: Daphne, execution_id: str) -> Response:
    return session.post_json(server, f"/api/executions/{execution_id}/interrupt/", {})


def interrupt_by_admin(session: Session, server: Daphne, execution_id: str) -> Response:
    # What the changelist form posts when the Go button (`index`) is pressed.
    return session.post_form(
        server,
        CHANGELIST,
        {
            "action": "interrupt_selected",
            "_selected_action": [execution_id],
            "index": 0,
        },
    )


@pytest.mark.parametrize(
    ("interrupt", "source", "answer"),
    [
        pytest.param(interrupt_by_api, "api", 202, id="api"),
        pytest.param(interrupt_by_admin, "admin", 302, id="admin"),
    ],
)
def test_terminal_run_interrupted_from_a_server_stops_by_push(
    cluster, session, redis_server, interrupt, source, answer
):
    server = cluster.daphne()
    terminal = cluster.execute(
        *demo_steps(**LONG_RUN), EXECUTIONS_POLL_INTERVAL=str(SLOW_POLL)
    )
    execution_id = terminal.first_line()
    watcher = session.watch(server, execution_id)
    live = watcher.step("step-1", "running")
    redis_server.wait_for_runner(execution_id)

    response = interrupt(session, server, execution_id)
    code = terminal.wait(timeout=15)
    report = watcher.finished()

    assert response.status == answer
    assert code == 130
    assert live["progress"]["total"] == LONG_RUN["ticks"]
    execution = Execution.objects.get(pk=execution_id)
    assert execution.finished_at - execution.interrupt_requested_at < PUSH_BOUND
    # Its only poll was at its start: the request came later.
    assert execution.finished_at - execution.started_at < timedelta(seconds=SLOW_POLL)
    label = Source(source).label  # the terminal says the door by its name
    assert f"Interrupt requested by {session.user.username} from {label} at" in (
        terminal.output
    )
    assert f"Not processed ({len(ALL_STEPS_OF_LONG_RUN)}):" in terminal.output
    assert report["status"] == "interrupted"
    assert report["interrupt"]["source"] == source
    assert report["outcome"]["steps_processed"] == []
    assert report["outcome"]["steps_not_processed"] == ALL_STEPS_OF_LONG_RUN


def test_browser_on_daphne_watches_a_terminal_run_live_to_its_report(cluster, session):
    server = cluster.daphne()
    # Step 1 outlasts the watcher's connect, so it sees all of step 2.
    terminal = cluster.execute(*demo_steps(count=2, seconds=3, ticks=5))
    execution_id = terminal.first_line()
    watcher = session.watch(server, execution_id)

    watcher.step("step-2", "running")
    live = terminal.popen.poll() is None
    report = watcher.finished()
    code = terminal.wait()

    assert live
    assert code == 0
    done = [
        event["step"]["progress"]["done"]
        for event in watcher.events
        if event["type"] == "step" and event["step"]["id"] == "step-2"
    ]
    assert done == sorted(done)
    assert {1, 2, 3, 4, 5} <= set(done)
    assert report["status"] == "succeeded"
    assert report["outcome"]["steps_processed"] == ["step-1", "step-2"]
    assert report["outcome"]["steps_not_processed"] == []
    assert [step["progress"]["done"] for step in report["steps"]] == [5, 5]
