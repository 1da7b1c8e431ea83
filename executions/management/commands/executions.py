"""List executions as a table."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from executions import services
from executions.models import Execution, Status

COLUMNS = ("ID", "COMMAND", "STATUS", "PROFILE", "STEPS", "CREATED", "FINISHED")


def _row(execution: Execution) -> tuple[str, ...]:
    done = sum(step["status"] == "succeeded" for step in execution.steps)
    return (
        str(execution.id),
        execution.cmd,
        execution.status,
        execution.profile or "-",
        f"{done}/{len(execution.steps)}",
        f"{execution.created_at:%Y-%m-%d %H:%M:%S}",
        f"{execution.finished_at:%Y-%m-%d %H:%M:%S}" if execution.finished_at else "-",
    )


class Command(BaseCommand):
    help = "List executions, newest first."

    def add_arguments(self, parser):
        parser.add_argument("--status", help=f"one of: {', '.join(Status.values)}")
        parser.add_argument("--limit", type=int, default=50)

    def handle(self, *args, status: str | None, limit: int, **options):
        if status is not None and status not in Status.values:
            raise CommandError(
                f"Unknown status {status!r}: use one of {', '.join(Status.values)}.",
                returncode=2,
            )
        if limit < 1:
            raise CommandError("--limit must be at least 1.", returncode=2)
        services.reap_orphans()
        rows = [COLUMNS] + [
            _row(execution)
            for execution in services.list_executions(status=status)[:limit]
        ]
        if len(rows) == 1:
            self.stdout.write("No executions.")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        for row in rows:
            self.stdout.write(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                )
            )
