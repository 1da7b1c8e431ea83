"""The terminal's words: the Ctrl-C notices and the final report in the
pages' words."""

from __future__ import annotations

import pytest

from executions import services, terminal
from executions.models import Source, Status
from tests import factories

pytestmark = pytest.mark.django_db


def test_interrupt_notice_offers_force_only_while_the_run_goes_on():
    assert terminal.interrupt_notice(force=False, ignored=False, ended=False) == (
        "Interrupting: no new step starts. Press Ctrl-C again to force."
    )
    assert terminal.interrupt_notice(force=True, ignored=False, ended=False) == (
        terminal.FORCED
    )
    assert terminal.interrupt_notice(force=False, ignored=False, ended=True) == (
        "The run has already ended: nothing to interrupt."
    )


def test_notices_fit_one_line_of_an_80_column_terminal():
    for text in (terminal.GRACEFUL, terminal.IGNORED, terminal.FORCED, terminal.ENDED):
        assert len(text) <= 80


def test_report_lists_every_interrupt_request_in_the_pages_words(make_user):
    alice = make_user("view", "interrupt", username="alice")
    execution = factories.execution(params={"count": 30})
    execution.claim("test-runner")
    services.request_interrupt(
        execution.id, user=alice, source=Source.WEB, reason="wrong branch"
    )
    services.request_interrupt(execution.id, source=Source.API, force=True)
    execution.refresh_from_db()
    steps = [{**step, "status": "skipped"} for step in execution.steps]
    outcome = {
        "kind": "interrupted",
        "steps_processed": [],
        "steps_not_processed": [step["id"] for step in steps],
        "errors": {},
    }
    execution.finish(Status.INTERRUPTED, outcome=outcome, steps=steps)

    lines = [text for text, _ in terminal.report(execution)]

    assert lines[0] == (
        f"Execution {execution.id} interrupted: 0 of 30 steps done · 0 %."
    )
    assert "  … and 10 more" in lines
    requests = [line for line in lines if "requested by" in line]
    assert requests[0].startswith("Interrupt requested by alice from Web page at ")
    assert requests[0].endswith(": wrong branch")
    assert requests[1].startswith("Forced interrupt requested by someone from JSON API")
