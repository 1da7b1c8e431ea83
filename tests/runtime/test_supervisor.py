"""The supervisor's durable poll, on its own."""

from __future__ import annotations

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
