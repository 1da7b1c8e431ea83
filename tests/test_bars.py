"""The terminal's live bars: the overall row and its countdown to force."""

from __future__ import annotations

import io
import time

import pytest

from executions.bars import TerminalBars, _Note
from tests import factories

pytestmark = pytest.mark.django_db


def test_overall_row_counts_work_and_shows_the_countdown_to_force():
    execution = factories.execution(params={"count": 2, "ticks": 4})
    bars = TerminalBars(io.StringIO())
    bars.started(execution)
    first = {**execution.steps[0], "status": "succeeded"}
    first["progress"] = {**first["progress"], "done": 4}
    second = {**execution.steps[1], "status": "running"}
    second["progress"] = {**second["progress"], "done": 2}

    bars.step(first)
    bars.step(second)
    bars.interrupt_requested(force=False, force_after=12)

    overall = bars.progress.tasks[0]
    assert overall.percentage == 75
    note = _Note().render(overall)
    assert note.plain in ("forcing in 12 s", "forcing in 11 s")
    bars.interrupt_requested(force=True, force_after=12)
    assert _Note().render(overall).plain == ""


def test_finished_run_ends_the_countdown_and_says_ctrl_c_has_nothing_to_stop():
    execution = factories.execution(params={"count": 1})
    bars = TerminalBars(io.StringIO())
    bars.started(execution)
    bars.interrupt_requested(force=False, force_after=30)
    assert bars.progress.tasks[0].fields["force_at"] > time.monotonic()

    bars.finished(execution)

    assert bars.ended is True
    assert bars.progress.tasks[0].fields["force_at"] is None
