"""The supervisor's database work: every read and write of a run's row, each
a small sync function wrapped for async code (ORM calls never run on the
event loop)."""

from __future__ import annotations

from datetime import datetime

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..models import RUNNING, Execution, LogLine, Status
from . import interrupts


@database_sync_to_async
def load(execution_id) -> Execution:
    return Execution.objects.select_related("resumed_from").get(pk=execution_id)


@database_sync_to_async
def claim(execution: Execution, supervisor: str) -> bool:
    return execution.claim(supervisor)


@database_sync_to_async
def claim_next(queue: str, supervisor: str) -> Execution | None:
    """Claim the oldest queued execution of `queue`, or None. Compare-and-set:
    when several workers race for one, exactly one wins."""
    for execution in Execution.objects.filter(
        status=Status.QUEUED, queue=queue
    ).order_by("created_at")[:10]:
        if execution.claim(supervisor):
            return Execution.objects.select_related("resumed_from").get(pk=execution.pk)
    return None


@database_sync_to_async
def rows(ids: list[str]) -> dict[str, dict]:
    """What the durable side says of these runs: one query for all."""
    rows = Execution.objects.filter(pk__in=ids).values(
        "id",
        "status",
        "started_at",
        "timeout",
        "force_after",
        "interrupt_requested_at",
        "interrupt_force",
    )
    return {str(row["id"]): row for row in rows}


@database_sync_to_async
def beat(ids: list[str]) -> None:
    Execution.objects.filter(pk__in=ids, status__in=RUNNING).update(
        heartbeat_at=timezone.now()
    )


@database_sync_to_async
def save_progress(batch: dict[str, list[dict]]) -> None:
    with transaction.atomic():
        for execution_id, steps in batch.items():
            Execution.objects.filter(pk=execution_id, status__in=RUNNING).update(
                steps=steps
            )


@database_sync_to_async
def save_logs(batch: dict[str, tuple[list[dict], int]], limit: int) -> dict[str, int]:
    """Store each run's new lines and what it dropped; drop its oldest beyond
    `limit`. Returns how many lines each run's row now says were dropped."""
    with transaction.atomic():
        existing = set(
            str(pk)
            for pk in Execution.objects.filter(pk__in=batch).values_list(
                "pk", flat=True
            )
        )
        for execution_id, (lines, dropped) in batch.items():
            if execution_id not in existing:
                continue  # deleted while it ran
            LogLine.objects.bulk_create(
                LogLine(
                    execution_id=execution_id,
                    seq=line["seq"],
                    step=line["step"] or "",
                    at=datetime.fromisoformat(line["at"]),
                    level=line["level"],
                    text=storable(line["text"]),
                )
                for line in lines
            )
            if lines:
                pruned, _ = LogLine.objects.filter(
                    execution_id=execution_id, seq__lte=lines[-1]["seq"] - limit
                ).delete()
                dropped += pruned
            if dropped:
                Execution.objects.filter(pk=execution_id).update(
                    log_dropped=F("log_dropped") + dropped
                )
        totals = Execution.objects.filter(pk__in=existing).values_list(
            "pk", "log_dropped"
        )
        return {str(pk): total for pk, total in totals}


def storable(text: str) -> str:
    """Text every database stores: PostgreSQL refuses NUL and unpaired
    surrogates (a filename printed with surrogateescape)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode()


@database_sync_to_async
def request(execution_id: str, *, source: str, force: bool, reason: str) -> None:
    """An interrupt the runtime asks for itself (timeout, shutdown)."""
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is not None:
        interrupts.record(
            execution, source=source, force=force, reason=reason, by_name=source
        )


@database_sync_to_async
def acknowledge(execution_id: str) -> dict | None:
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None or not execution.record_delivered():
        return None
    return Execution.objects.get(pk=execution_id).snapshot()


@database_sync_to_async
def finish(
    execution: Execution, status: str, outcome: dict, steps, results
) -> tuple[Execution, dict] | None:
    """Write the run's end; return the row as it then stands, with its
    snapshot (None if it was deleted), in the same trip to the database."""
    execution.finish(status, outcome=outcome, steps=steps, results=results)
    return _snapshot(execution.id)


@database_sync_to_async
def fail_to_start(execution: Execution, error: str) -> None:
    steps = [
        {**step, "status": "skipped"} if step["status"] == "pending" else step
        for step in execution.steps
    ]
    execution.finish(
        Status.FAILED,
        outcome={
            "kind": "failed",
            "steps_processed": [],
            "steps_not_processed": [step["id"] for step in steps],
            "errors": {"start": error},
        },
        steps=steps,
    )


@database_sync_to_async
def snapshot(execution_id) -> tuple[Execution, dict] | None:
    return _snapshot(execution_id)


def _snapshot(execution_id) -> tuple[Execution, dict] | None:
    execution = Execution.objects.select_related("resumed_from").filter(pk=execution_id)
    execution = execution.first()
    return None if execution is None else (execution, execution.snapshot())
