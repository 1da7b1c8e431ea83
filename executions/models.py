"""Executions: one row per run of a command, its state machine, and the durable
interrupt request.

Every transition is a compare-and-set: a conditional UPDATE filtered on the
states it may leave, acting on the row count. A late writer therefore can
never turn a terminal state into another one.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, models, router
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from . import returning


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    INTERRUPTING = "interrupting", "Interrupting"
    INTERRUPTED = "interrupted", "Interrupted"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost"


ACTIVE = (Status.QUEUED, Status.RUNNING, Status.INTERRUPTING)
RUNNING = (Status.RUNNING, Status.INTERRUPTING)
TERMINAL = (Status.INTERRUPTED, Status.SUCCEEDED, Status.FAILED, Status.LOST)
#: The related name under which an execution keeps its interrupt requests,
#: and how many executions' requests `InterruptRequest.attach` reads at once.
REQUESTS = "interrupt_requests"
REQUESTS_CHUNK = 500


class Source(models.TextChoices):
    """The door an action came through."""

    CLI = "cli", "Terminal"
    WEB = "web", "Web page"
    API = "api", "JSON API"
    ADMIN = "admin", "Admin"
    WEBSOCKET = "websocket", "Websocket"
    SHUTDOWN = "shutdown", "Shutdown"
    REAPER = "reaper", "Reaper"
    TIMEOUT = "timeout", "Timeout"


class ExecutionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE)

    def running(self):
        return self.filter(status__in=RUNNING)

    def finished(self):
        return self.filter(status__in=TERMINAL)

    def next_queued(self, queue: str):
        """The queued rows of a worker queue, oldest first: a range of the
        (status, queue, created_at) index, read at every poll."""
        return self.filter(status=Status.QUEUED, queue=queue).order_by("created_at")

    def changed_since(self, since):
        """The active rows and those that ended since `since`, in no order:
        what the relay reads every interval. Unordered, so that each half of
        the OR is read from its own index; sorted by `created_at` (the
        default), the planner walks that index through every run ever made."""
        return self.filter(Q(status__in=ACTIVE) | Q(finished_at__gte=since)).order_by()

    def stale(self, timeout: float):
        """Rows whose supervisor is gone by the clock: running ones with no
        heartbeat for `timeout` s, and queued ones that a named supervisor
        should have claimed at once but has not within `timeout` s."""
        cutoff = timezone.now() - timedelta(seconds=timeout)
        return self.filter(
            Q(status__in=RUNNING)
            & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
            | Q(status=Status.QUEUED, created_at__lt=cutoff) & ~Q(supervisor="")
        )


class Execution(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cmd = models.CharField(max_length=200)
    title = models.CharField(max_length=300)
    params = models.JSONField(default=dict, blank=True)
    # NULL, not "", for no profile: the unique constraint must ignore it.
    profile = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    strategy = models.CharField(max_length=50, default="finish-current")
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED
    )
    # The step snapshot: a list of StepState.to_dict(), in definition order.
    steps = models.JSONField(default=list, blank=True)
    outcome = models.JSONField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    #: Indexed for the relay's "ended since" (runtime.relay): the table keeps
    #: every run ever made, and what is read every interval must not scan it.
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who started it, as text: kept when the user is deleted; a terminal's login.
    created_by_name = models.CharField(max_length=200, blank=True)
    created_from = models.CharField(max_length=20, choices=Source.choices)
    resumed_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resumed_by",
    )

    #: The worker queue it waits in; empty when its supervisor was chosen at
    #: start (in-process, or a terminal's own run).
    queue = models.CharField(max_length=100, blank=True)
    #: The process that supervises it (runtime.identity): named at creation
    #: when known (a server, a terminal), at claim time for a queue.
    supervisor = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    #: Seconds from start until a graceful interrupt (source `timeout`).
    timeout = models.FloatField(null=True, blank=True)
    #: Seconds a graceful interrupt may stay pending before it is forced.
    force_after = models.FloatField(null=True, blank=True)
    #: Results of the steps that returned one (JSON), kept for resume.
    results = models.JSONField(default=dict, blank=True)

    interrupt_requested_at = models.DateTimeField(null=True, blank=True)
    interrupt_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who asked, as text: kept when the user is deleted; a terminal's login.
    interrupt_requested_by_name = models.CharField(max_length=200, blank=True)
    interrupt_source = models.CharField(
        max_length=20, choices=Source.choices, blank=True
    )
    interrupt_force = models.BooleanField(default=False)
    interrupt_reason = models.TextField(blank=True)
    #: When the execution process's signal was set (the acknowledgement).
    interrupt_delivered_at = models.DateTimeField(null=True, blank=True)
    #: Log lines not kept: over the rate at the source, or the oldest beyond
    #: `EXECUTIONS_LOG_LIMIT`.
    log_dropped = models.PositiveBigIntegerField(default=0)

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("interrupt_execution", "Can interrupt execution")]
        indexes = [
            # By status first: the active rows, a few among every run ever
            # made, are what the runtime reads every interval (the reaper,
            # the relay); and a worker's poll, the oldest queued row of its
            # queue, is one range of it (store.claim_next).
            models.Index(
                fields=["status", "queue", "created_at"], name="execution_status_queue"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["profile"],
                condition=Q(status__in=ACTIVE) & Q(profile__isnull=False),
                name="one_active_execution_per_profile",
            ),
            # Resumed at most once: a second resume would redo the same work.
            models.UniqueConstraint(
                fields=["resumed_from"],
                condition=Q(resumed_from__isnull=False),
                name="resumed_at_most_once",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[value for value, _ in Status.choices]),
                name="execution_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cmd} {self.id}"

    def get_absolute_url(self) -> str:
        return reverse("executions:detail", args=[self.id])

    def snapshot(self) -> dict:
        """The contract's JSON shape, shared by the API, the websockets, the
        terminal's --json and the broadcasts."""
        return {
            "id": str(self.id),
            "cmd": self.cmd,
            "title": self.title,
            "profile": self.profile,
            "status": self.status,
            "strategy": self.strategy,
            "timeout": self.timeout,
            "force_after": self.force_after,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "created_by": self.created_by_name or None,
            "created_from": self.created_from,
            "resumed_from": str(self.resumed_from_id) if self.resumed_from_id else None,
            "params": self.params,
            "steps": self.steps,
            "interrupt": self.interrupt_snapshot(),
            "outcome": self.outcome,
            "url": self.get_absolute_url(),
        }

    def interrupt_snapshot(self) -> dict | None:
        if self.interrupt_requested_at is None:
            return None
        return {
            "requested_at": iso(self.interrupt_requested_at),
            "by": self.interrupt_requested_by_name or None,
            "source": self.interrupt_source,
            "force": self.interrupt_force,
            "reason": self.interrupt_reason,
            "delivered_at": iso(self.interrupt_delivered_at),
            "requests": [request.snapshot() for request in self.requests()],
        }

    def requests(self) -> list[InterruptRequest]:
        """Its interrupt requests, oldest first: read once per instance
        (`InterruptRequest.attach`), for every row of a list in one go."""
        if REQUESTS not in getattr(self, "_prefetched_objects_cache", {}):
            InterruptRequest.attach([self])
        return list(self.interrupt_requests.all())

    def show_requests(self, requests: list[InterruptRequest]) -> None:
        """Keep `requests` as its interrupt requests, as `prefetch_related`
        keeps what it read: `interrupt_requests.all()` answers from them."""
        shown = self.interrupt_requests.all()
        shown._result_cache = requests
        shown._prefetch_done = True
        if not hasattr(self, "_prefetched_objects_cache"):
            self._prefetched_objects_cache = {}
        self._prefetched_objects_cache[REQUESTS] = shown

    @classmethod
    def snapshots(cls, executions: Iterable[Execution]) -> list[dict]:
        """The snapshots of many rows, their interrupt requests read in one
        statement rather than one each."""
        executions = list(executions)
        InterruptRequest.attach(executions)
        return [execution.snapshot() for execution in executions]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def interrupt_requested(self) -> bool:
        return self.interrupt_requested_at is not None

    # -- transitions: each a compare-and-set that saves only its fields ------

    def _transition(self, allowed, **changes) -> bool:
        """UPDATE this row to `changes` if its status is in `allowed`.

        Returns False, changing nothing, if another writer got there first.
        On success the instance carries the new values.
        """
        updated = (
            type(self).objects.filter(pk=self.pk, status__in=allowed).update(**changes)
        )
        if updated:
            for field, value in changes.items():
                setattr(self, field, value)
        return bool(updated)

    def claim(self, supervisor: str) -> bool:
        """queued → running, supervised by `supervisor`."""
        now = timezone.now()
        claimed = dict(supervisor=supervisor, started_at=now, heartbeat_at=now)
        queryset = type(self).objects.filter(pk=self.pk, status=Status.QUEUED)
        if queryset.filter(interrupt_requested_at__isnull=True).update(
            status=Status.RUNNING, **claimed
        ):
            status = Status.RUNNING
        elif queryset.update(status=Status.INTERRUPTING, **claimed):
            # An interrupt waited on the queued row for the strategy to apply.
            status = Status.INTERRUPTING
        else:
            return False
        for field, value in {"status": status, **claimed}.items():
            setattr(self, field, value)
        return True

    def record_interrupt(
        self,
        *,
        source: str,
        user=None,
        by_name: str = "",
        force: bool = False,
        reason: str = "",
    ) -> str:
        """Record an interrupt request durably.

        Returns what happened: `interrupted` (it was queued: nothing will run),
        `requested` (running → interrupting), `escalated` (force added to a
        pending request), `already` (the same request stands) or
        `not_running` (finished: nothing changed).
        """
        request = _interrupt_request(source, user, by_name, force, reason)
        result = self._record(request, force=force)
        # Each request that changed the row is kept; a repeat changes nothing.
        if result in ("interrupted", "requested", "escalated"):
            _audit(self, request)
        return result

    @classmethod
    def record_interrupt_of_running(
        cls,
        pk: uuid.UUID,
        *,
        source: str,
        user=None,
        by_name: str = "",
        force: bool = False,
        reason: str = "",
        recorded: Callable[[], object] | None = None,
    ) -> Execution | None:
        """The common case of `record_interrupt` without reading the row
        first: running with no request yet → interrupting, in one
        `UPDATE ... RETURNING` (SQLite ≥ 3.35, PostgreSQL). Returns the row as
        it now stands, its audit record kept and shown (no query for
        either); None, having changed nothing, for any other row or none, or
        on a database without UPDATE ... RETURNING: then read the row and
        call `record_interrupt`, which knows every other case.

        `recorded()` is called as soon as the row holds the request, before
        the instance is made from it and its audit record is written: the
        push to the supervisor needs the row written, not the rest."""
        connection = connections[router.db_for_write(cls)]
        if not returning.supported(connection):
            return None
        request = _interrupt_request(source, user, by_name, force, reason)
        execution = returning.update(
            connection,
            cls,
            pk,
            # What _record's running → interrupting writes.
            {"status": Status.INTERRUPTING, **request},
            where={"status": Status.RUNNING, "interrupt_requested_at": None},
            matched=recorded,
        )
        if execution is None:
            return None
        audit = _audit(execution, request)
        # No request was on the row (the UPDATE's condition), and every
        # request comes with the row's own fields: this is its only one.
        execution.show_requests([audit])
        return execution

    def _record(self, request: dict, *, force: bool) -> str:
        queryset = type(self).objects.filter(pk=self.pk)
        # A status never goes back to queued: if this instance saw the row
        # past it, the writes below cannot match, so they are not attempted
        # (each would take SQLite's write lock for nothing).
        if self.status == Status.QUEUED:
            # Nothing has run: under finish-current (or when forced) nothing
            # will. Under ignore or poll-next-n:N the strategy still applies,
            # so the request waits on the queued row for the engine to see.
            if (force or self.stops_at_once) and self._transition(
                [Status.QUEUED],
                status=Status.INTERRUPTED,
                finished_at=request["interrupt_requested_at"],
                outcome=_stopped_outcome(self.steps),
                steps=_all_skipped(self.steps),
                **request,
            ):
                return "interrupted"
            if not force and queryset.filter(
                status=Status.QUEUED, interrupt_requested_at__isnull=True
            ).update(**request):
                for field, value in request.items():
                    setattr(self, field, value)
                return "requested"
        if queryset.filter(
            status=Status.RUNNING, interrupt_requested_at__isnull=True
        ).update(status=Status.INTERRUPTING, **request):
            # The row now holds exactly what was written: no need to re-read.
            for field, value in {"status": Status.INTERRUPTING, **request}.items():
                setattr(self, field, value)
            return "requested"
        if force and queryset.filter(status__in=RUNNING, interrupt_force=False).update(
            status=Status.INTERRUPTING, interrupt_force=True
        ):
            self.refresh_from_db()
            return "escalated"
        if force and queryset.filter(status=Status.QUEUED).update(
            status=Status.INTERRUPTED,
            finished_at=request["interrupt_requested_at"],
            outcome=_stopped_outcome(self.steps),
            steps=_all_skipped(self.steps),
            interrupt_force=True,
        ):
            self.refresh_from_db()
            return "interrupted"
        self.refresh_from_db()
        return "already" if self.status in ACTIVE else "not_running"

    @property
    def stops_at_once(self) -> bool:
        """Whether an interrupt of this run, while queued, leaves nothing for
        its strategy to do (finish-current, poll-next-n:0)."""
        return self.strategy in ("finish-current", "poll-next-n:0")

    @classmethod
    def record_delivered(cls, pk) -> Execution | None:
        """The execution process's signal is set: record when, once. Returns
        the row as it then stands, in the one `UPDATE ... RETURNING` where the
        database has it (a read after the write where not), or None, having
        changed nothing, if it was recorded before, the run had ended, or the
        row is gone."""
        changes = {"interrupt_delivered_at": timezone.now()}
        where = {"status": RUNNING, "interrupt_delivered_at": None}
        connection = connections[router.db_for_write(cls)]
        if returning.supported(connection):
            return returning.update(connection, cls, pk, changes, where=where)
        queryset = cls.objects.filter(
            pk=pk, status__in=RUNNING, interrupt_delivered_at__isnull=True
        )
        if not queryset.update(**changes):
            return None
        return cls.objects.filter(pk=pk).first()  # None: deleted since

    def save_steps(self, steps: list[dict]) -> bool:
        """Persist step progress while the run is live."""
        return self._transition(RUNNING, steps=steps)

    def finish(
        self,
        status: str,
        *,
        outcome: dict,
        steps: list[dict],
        results: dict | None = None,
    ) -> bool:
        """running / interrupting → a terminal state, with the outcome."""
        return self._transition(
            RUNNING, **self._finishing(status, outcome, steps, results)
        )

    def finish_and_read(
        self,
        status: str,
        *,
        outcome: dict,
        steps: list[dict],
        results: dict | None = None,
    ) -> Execution | None:
        """`finish`, and the row as it then stands (every column, what other
        writers put there too), in one `UPDATE ... RETURNING` where the
        database has it (a read after the write where not). None, having
        changed nothing, if the row was no longer running (reaped as lost)."""
        changes = self._finishing(status, outcome, steps, results)
        connection = connections[router.db_for_write(type(self))]
        if returning.supported(connection):
            return returning.update(
                connection, type(self), self.pk, changes, where={"status": RUNNING}
            )
        if not self._transition(RUNNING, **changes):
            return None
        return type(self).objects.filter(pk=self.pk).first()  # None: deleted since

    def _finishing(self, status, outcome, steps, results) -> dict:
        if status not in TERMINAL:
            raise ValueError(f"{str(status)!r} is not a terminal status")
        return dict(
            status=status,
            outcome=outcome,
            steps=steps,
            results=results if results is not None else self.results,
            finished_at=timezone.now(),
        )

    def reap(self) -> str | None:
        """End a run whose supervisor is gone, so nothing stays stuck:
        `interrupting` → `interrupted` (the stop that was asked for happened,
        if not cleanly), `running` → `lost`. Returns the new status, or None
        if another writer moved the row on first."""
        steps = _all_skipped(self.steps, lost=True)
        if self._transition(
            [Status.INTERRUPTING],
            status=Status.INTERRUPTED,
            steps=steps,
            outcome=_stopped_outcome(steps),
            finished_at=timezone.now(),
        ):
            return Status.INTERRUPTED
        return Status.LOST if self.mark_lost() else None

    def mark_lost(self) -> bool:
        """queued / running / interrupting → lost: its supervisor is gone."""
        steps = _all_skipped(self.steps, lost=True)
        return self._transition(
            ACTIVE,
            status=Status.LOST,
            steps=steps,
            outcome=_stopped_outcome(steps, kind="lost"),
            finished_at=timezone.now(),
        )


class InterruptRequest(models.Model):
    """One request to interrupt an execution: every one is kept, so a forced
    escalation by someone else does not hide who asked first, and why."""

    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name=REQUESTS
    )
    at = models.DateTimeField()
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    by_name = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    force = models.BooleanField(default=False)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"interrupt of {self.execution_id} by {self.by_name or '?'}"

    @classmethod
    def attach(cls, executions: Iterable[Execution]) -> None:
        """Read the interrupt requests of `executions` (those with any not
        yet read) in one statement per database, none if no row has a
        request, and keep them on each (`Execution.show_requests`).

        Django's `prefetch_related`, or the related manager, builds its
        statement anew on each call: ~0.5 ms for a row, which every run's
        end waited for before its watchers heard. This statement's text is
        written from the meta, its rows made as the ORM makes them."""
        pending: dict[str, dict[Any, Execution]] = {}
        for execution in executions:
            cached = getattr(execution, "_prefetched_objects_cache", {})
            # Every request comes with the row's own fields: none, no read.
            if execution.interrupt_requested_at is not None and REQUESTS not in cached:
                alias = execution._state.db or router.db_for_read(cls)
                pending.setdefault(alias, {})[execution.pk] = execution
        key = cls._meta.get_field("execution")
        for alias, wanted in pending.items():
            found: dict[Any, list[InterruptRequest]] = {pk: [] for pk in wanted}
            connection = connections[alias]
            params = [key.get_db_prep_value(pk, connection) for pk in wanted]
            rows = []
            with connection.cursor() as cursor:
                for start in range(0, len(params), REQUESTS_CHUNK):
                    chunk = params[start : start + REQUESTS_CHUNK]
                    cursor.execute(_requests_sql(alias, len(chunk)), chunk)
                    rows += cursor.fetchall()
            for row in rows:
                request = returning.instance(cls, connection, row)
                execution = wanted[request.execution_id]
                key.set_cached_value(request, execution)
                found[request.execution_id].append(request)
            for pk, requests in found.items():
                wanted[pk].show_requests(requests)

    def snapshot(self) -> dict:
        return {
            "at": iso(self.at),
            "by": self.by_name or None,
            "source": self.source,
            "force": self.force,
            "reason": self.reason,
        }


class LogLineQuerySet(models.QuerySet):
    def page(self, *, step: str | None = None, after: int = 0, size: int):
        """Up to `size` lines after seq `after`, of one step if given."""
        lines = self.filter(seq__gt=after)
        if step is not None:
            lines = lines.filter(step=step)
        return lines.order_by("seq")[:size]


class LogLine(models.Model):
    """One line of an execution's log: a logging record, a line a step
    printed, a line of a subprocess's output, a traceback. Written by the
    execution's supervisor only, at most `EXECUTIONS_LOG_LIMIT` per execution."""

    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="log_lines"
    )
    #: Its place in the execution's log, from 1; the API's `after` and `next`.
    seq = models.PositiveBigIntegerField()
    #: The step it belongs to; empty for the run-level log.
    step = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField()
    level = models.CharField(max_length=10)
    text = models.TextField()

    objects = LogLineQuerySet.as_manager()

    class Meta:
        ordering = ["execution", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "seq"], name="one_log_line_per_seq"
            )
        ]
        indexes = [
            models.Index(fields=["execution", "step", "seq"], name="log_line_step_seq")
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} #{self.seq}"

    def snapshot(self) -> dict:
        return {
            "seq": self.seq,
            "step": self.step or None,
            "at": iso(self.at),
            "level": self.level,
            "text": self.text,
        }


def _interrupt_request(source, user, by_name, force, reason) -> dict:
    """The row's fields for an interrupt request made now."""
    return {
        "interrupt_requested_at": timezone.now(),
        "interrupt_requested_by": user,
        "interrupt_requested_by_name": by_name or _name(user),
        "interrupt_source": source,
        "interrupt_force": force,
        "interrupt_reason": reason,
    }


def _requests_sql(alias: str, count: int) -> str:
    """`InterruptRequest.attach`'s statement, for `count` executions."""
    select, order = _requests_statement(alias)
    return f"{select} ({', '.join(['%s'] * count)}) ORDER BY {order}"


@functools.cache
def _requests_statement(alias: str) -> tuple[str, str]:
    """The requests of some executions, in the model's order: the text
    before the keys, and the ordering."""
    meta = InterruptRequest._meta
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(field.column) for field in meta.concrete_fields)
    key = quote(meta.get_field("execution").column)
    order = ", ".join(
        quote((meta.pk if name == "pk" else meta.get_field(name)).column)
        for name in meta.ordering
    )
    return f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {key} IN", order


def _audit(execution: Execution, request: dict) -> InterruptRequest:
    """The audit record of a request that changed the row. An instance that
    kept its requests (`show_requests`) reads them again when next asked."""
    getattr(execution, "_prefetched_objects_cache", {}).pop(REQUESTS, None)
    return InterruptRequest.objects.create(
        execution=execution,
        at=request["interrupt_requested_at"],
        by=request["interrupt_requested_by"],
        by_name=request["interrupt_requested_by_name"],
        source=request["interrupt_source"],
        force=request["interrupt_force"],
        reason=request["interrupt_reason"],
    )


def iso(moment) -> str | None:
    """A moment as the contract writes it: UTC, milliseconds, `Z`."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _name(user) -> str:
    return user.get_username() if user is not None else ""


def _all_skipped(steps: list[dict], *, lost: bool = False) -> list[dict]:
    """Steps as they stand when a run ends without its supervisor: what had not
    finished is `skipped` (never started) or `interrupted` (started)."""
    result = []
    for step in steps:
        step = dict(step)
        if step.get("status") in ("pending", None):
            step["status"] = "skipped"
        elif lost and step.get("status") in ("running", "stalled"):
            step["status"] = "interrupted"
            step["error"] = "lost: its supervisor stopped heartbeating"
        result.append(step)
    return result


def _stopped_outcome(steps: list[dict], kind: str = "interrupted") -> dict:
    processed = [step["id"] for step in steps if step.get("status") == "succeeded"]
    return {
        "kind": kind,
        "steps_processed": processed,
        "steps_not_processed": [
            step["id"] for step in steps if step["id"] not in processed
        ],
        "errors": {},
    }
