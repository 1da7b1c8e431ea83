"""The supervisor's durable poll and its early log writes, on their own."""

from __future__ import annotations

import asyncio

from executions.runtime import supervisor as supervising
from executions.runtime.supervisor import Supervisor


class FakeRun:
    def __init__(self) -> None:
        self.delivered: list[bool] = []

    def deliver(self, force: bool) -> None:
        self.delivered.append(force)


async def test_a_run_that_starts_while_the_rows_are_read_is_left_alone(monkeypatch):
    supervisor = Supervisor(reaps=False)
    old, new = FakeRun(), FakeRun()
    supervisor.runs["old"] = old

    async def rows(ids):
        supervisor.runs["new"] = new  # claimed meanwhile: its row exists
        return {
            "old": {
                "status": "running",
                "interrupt_requested_at": None,
                "timeout": None,
            }
        }

    monkeypatch.setattr(supervising.store, "rows", rows)

    await supervisor._poll()

    assert (old.delivered, new.delivered) == ([], [])


async def test_a_run_whose_row_is_gone_is_forced(monkeypatch):
    supervisor = Supervisor(reaps=False)
    orphan = FakeRun()
    supervisor.runs["gone"] = orphan

    async def rows(ids):
        return {}

    monkeypatch.setattr(supervising.store, "rows", rows)

    await supervisor._poll()

    assert orphan.delivered == [True]


class LoggingRun:
    """A run holding log lines for the database, as `Run` keeps them."""

    id = "logging"

    def __init__(self) -> None:
        self.unsaved: list[dict] = [{"seq": 1}]
        self.totals: list[int] = []

    def take_logs(self):
        lines, self.unsaved = self.unsaved, []
        return (lines, 0) if lines else None

    def give_back_logs(self, lines, dropped) -> None:
        self.unsaved = lines + self.unsaved

    def saved_logs(self, total: int) -> None:
        self.totals.append(total)


async def test_a_failed_early_log_write_leaves_the_retries_to_the_rounds(
    monkeypatch, settings
):
    settings.EXECUTIONS_DB_PROGRESS_INTERVAL = 0.2
    supervisor = Supervisor(reaps=False)
    run = LoggingRun()
    supervisor.runs[run.id] = run
    writes: list[dict] = []

    async def save_logs(batch, limit):
        writes.append(batch)
        if len(writes) == 1:
            raise OSError("the database is away")
        return {key: 0 for key in batch}

    monkeypatch.setattr(supervising.store, "save_logs", save_logs)

    supervisor._logs_due(run)
    await supervisor._log_writer
    supervisor._logs_due(run)  # within the pause: not tried
    await asyncio.sleep(0)
    failed = (len(writes), run.unsaved)
    await asyncio.sleep(0.25)
    supervisor._logs_due(run)
    await supervisor._log_writer

    assert failed == (1, [{"seq": 1}])
    assert len(writes) == 2
    assert (run.unsaved, run.totals) == ([], [0])
