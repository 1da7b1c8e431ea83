"""The supervisor's database work: every read and write of a run's row, each
a small sync function wrapped for async code (ORM calls never run on the
event loop), in a thread of the runtime's own.

Channels' `database_sync_to_async` runs everything in Django's one sync
thread: in a server that supervises its runs, an interrupt from a door
queued there behind the runs' starts, progress and log writes, and the
runs' writes behind the requests. `runtime_database` gives the runtime a
thread and a connection of its own (for the supervisor, the reaper and the
relay); the doors keep Django's."""

from __future__ import annotations

import functools
import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import datetime

from channels.db import DatabaseSyncToAsync
from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from ..models import RUNNING, Execution, LogLine, Status
from . import interrupts


class _RuntimeThread(Executor):
    """One thread, so the runtime's writes keep their order, as they did in
    Django's. A forked child (a prefork pool's) gets a thread of its own: the
    parent's would not exist there, and work handed to it would never run."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="executions-runtime-db"
        )

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, **options) -> None:
        self._pool.shutdown(wait, **options)


_thread = _RuntimeThread()


def runtime_database(function):
    """`database_sync_to_async`, in the runtime's database thread (old and
    broken connections closed before and after each call, as there)."""
    return DatabaseSyncToAsync(function, thread_sensitive=False, executor=_thread)


@runtime_database
def load(execution_id) -> Execution:
    return Execution.objects.select_related("resumed_from").get(pk=execution_id)


@runtime_database
def claim(execution: Execution, supervisor: str) -> bool:
    return execution.claim(supervisor)


@runtime_database
def claim_next(queue: str, supervisor: str) -> Execution | None:
    """Claim the oldest queued execution of `queue`, or None. Compare-and-set:
    when several workers race for one, exactly one wins."""
    for execution in Execution.objects.next_queued(queue)[:10]:
        if execution.claim(supervisor):
            return Execution.objects.select_related("resumed_from").get(pk=execution.pk)
    return None


@runtime_database
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


@runtime_database
def beat(ids: list[str]) -> None:
    Execution.objects.filter(pk__in=ids, status__in=RUNNING).update(
        heartbeat_at=timezone.now()
    )


#: Rows per progress statement (SQLite allows 32,766 parameters).
PROGRESS_ROWS = 500


@runtime_database
def save_progress(batch: dict[str, list[dict]]) -> None:
    """Every run's steps, in one statement per PROGRESS_ROWS runs, of the
    rows still running. One UPDATE each, in a transaction, held SQLite's
    write lock for 30-50 ms with 100 runs going, every half second: a door's
    interrupt in that window waited for it."""
    items = list(batch.items())
    connection = connections[router.db_for_write(Execution)]
    for start in range(0, len(items), PROGRESS_ROWS):
        sql, params = _progress_statement(
            connection, items[start : start + PROGRESS_ROWS]
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _progress_statement(connection, items: list[tuple[str, list[dict]]]):
    """`UPDATE … SET steps = CASE pk WHEN … END WHERE pk IN (…) AND status IN
    (running ones)`, from the model's meta, as returning.update writes."""
    meta = Execution._meta
    quote = connection.ops.quote_name
    pk, steps, status = meta.pk, meta.get_field("steps"), meta.get_field("status")
    keys = [pk.get_db_prep_value(execution_id, connection) for execution_id, _ in items]
    cases, params = [], []
    for key, (_, value) in zip(keys, items, strict=True):
        cases.append("WHEN %s THEN %s")
        params += [key, steps.get_db_prep_save(value, connection)]
    params += keys + list(RUNNING)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {quote(steps.column)} = "
        f"CASE {quote(pk.column)} {' '.join(cases)} END "
        f"WHERE {quote(pk.column)} IN ({', '.join(['%s'] * len(keys))}) "
        f"AND {quote(status.column)} IN ({', '.join(['%s'] * len(RUNNING))})"
    )
    return sql, params


@runtime_database
def save_logs(batch: dict[str, tuple[list[dict], int]], limit: int) -> dict[str, int]:
    """Store each run's new lines and what it dropped; drop its oldest beyond
    `limit`. Returns how many lines each run's row now says were dropped."""
    alias = router.db_for_write(LogLine)
    connection = connections[alias]
    with transaction.atomic(using=alias):
        existing = set(
            str(pk)
            for pk in Execution.objects.filter(pk__in=batch).values_list(
                "pk", flat=True
            )
        )
        for execution_id, (lines, dropped) in batch.items():
            if execution_id not in existing:
                continue  # deleted while it ran
            if lines:
                _insert_lines(connection, execution_id, lines)
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


#: A log line's fields, in the order `_insert_lines` gives their values.
LINE_FIELDS = ("execution", "seq", "step", "at", "level", "text")


def _insert_lines(connection, execution_id: str, lines: list[dict]) -> None:
    """One run's new lines, in one `executemany` of a statement built once.
    `bulk_create` compiled every value of every line through its field (40
    µs a line, 90 % of the write), and a run's last write is on the way to
    "stopped": about `run.LOG_WRITE_LINES` lines for a run logging at its
    cap, more after a burst."""
    owner = LogLine._meta.get_field("execution").get_db_prep_save(
        execution_id, connection
    )
    moment = connection.ops.adapt_datetimefield_value
    rows = [
        (
            owner,
            line["seq"],
            line["step"] or "",
            moment(datetime.fromisoformat(line["at"])),
            line["level"],
            storable(line["text"]),
        )
        for line in lines
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_insert_sql(connection.alias), rows)


@functools.lru_cache(maxsize=8)
def _insert_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    meta = LogLine._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in LINE_FIELDS)
    marks = ", ".join(["%s"] * len(LINE_FIELDS))
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks})"


def storable(text: str) -> str:
    """Text every database stores: PostgreSQL refuses NUL and unpaired
    surrogates (a filename printed with surrogateescape)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode()


@runtime_database
def request(execution_id: str, *, source: str, force: bool, reason: str) -> None:
    """An interrupt the runtime asks for itself (timeout, shutdown)."""
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is not None:
        interrupts.record(
            execution, source=source, force=force, reason=reason, by_name=source
        )


@runtime_database
def acknowledge(execution_id: str) -> dict | None:
    """Record that the run's signal is set; its snapshot, or None if that was
    recorded before (or the run ended, or its row is gone): one statement for
    the write and the row, one for its interrupt requests."""
    execution = Execution.record_delivered(execution_id)
    return execution.snapshot() if execution is not None else None


@runtime_database
def finish(
    execution: Execution, status: str, outcome: dict, steps, results
) -> tuple[Execution, dict] | None:
    """Write the run's end; return the row as it then stands, with its
    snapshot (None if it was deleted), in the same trip to the database: one
    statement for the write and the row, one for its interrupt requests."""
    row = execution.finish_and_read(
        status, outcome=outcome, steps=steps, results=results
    )
    if row is None:  # already final (reaped as lost): as the row says
        return _snapshot(execution.id)
    return row, row.snapshot()


@runtime_database
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


@runtime_database
def snapshot(execution_id) -> tuple[Execution, dict] | None:
    return _snapshot(execution_id)


def _snapshot(execution_id) -> tuple[Execution, dict] | None:
    execution = Execution.objects.select_related("resumed_from").filter(pk=execution_id)
    execution = execution.first()
    return None if execution is None else (execution, execution.snapshot())
