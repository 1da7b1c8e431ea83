"""Executions: one row per run of a command, its state machine, and the durable
interrupt request.

Every transition is a compare-and-set: a conditional UPDATE filtered on the
states it may leave, acting on the row count. A late writer therefore can
never turn a terminal state into another one.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


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


class Source(models.TextChoices):
    """The door an action came through."""

    CLI = "cli", "Terminal"
    WEB = "web", "Web page"
    API = "api", "JSON API"
    ADMIN = "admin", "Admin"
    WEBSOCKET = "websocket", "Websocket"
    SHUTDOWN = "shutdown", "Shutdown"
    REAPER = "reaper", "Reaper"


class ExecutionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE)

    def running(self):
        return self.filter(status__in=RUNNING)

    def finished(self):
        return self.filter(status__in=TERMINAL)

    def stale(self, timeout: float):
        """Running rows whose runner has not heartbeated for `timeout` s."""
        cutoff = timezone.now() - timedelta(seconds=timeout)
        return self.running().filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
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
        max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    # The step snapshot: a list of StepState.to_dict(), in definition order.
    steps = models.JSONField(default=list, blank=True)
    outcome = models.JSONField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

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

    #: The worker queue it waits in; empty when its runner was chosen at start
    #: (in-process, or a terminal's own run).
    queue = models.CharField(max_length=100, blank=True, db_index=True)
    runner = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

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

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("interrupt_execution", "Can interrupt execution")]
        constraints = [
            models.UniqueConstraint(
                fields=["profile"],
                condition=Q(status__in=ACTIVE) & Q(profile__isnull=False),
                name="one_active_execution_per_profile",
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
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
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
            "requested_at": _iso(self.interrupt_requested_at),
            "by": self.interrupt_requested_by_name or None,
            "source": self.interrupt_source,
            "force": self.interrupt_force,
            "reason": self.interrupt_reason,
        }

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

    def claim(self, runner: str) -> bool:
        """queued → running, owned by `runner`."""
        now = timezone.now()
        return self._transition(
            [Status.QUEUED],
            status=Status.RUNNING,
            runner=runner,
            started_at=now,
            heartbeat_at=now,
        )

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
        now = timezone.now()
        request = {
            "interrupt_requested_at": now,
            "interrupt_requested_by": user,
            "interrupt_requested_by_name": by_name or _name(user),
            "interrupt_source": source,
            "interrupt_force": force,
            "interrupt_reason": reason,
        }
        # A status never goes back to queued: if this instance saw the row
        # past it, the write below cannot match, so it is not attempted (it
        # would take SQLite's write lock for nothing on every interrupt).
        if self.status == Status.QUEUED and self._transition(
            [Status.QUEUED],
            status=Status.INTERRUPTED,
            finished_at=now,
            outcome=_stopped_outcome(self.steps),
            steps=_all_skipped(self.steps),
            **request,
        ):
            return "interrupted"
        queryset = type(self).objects.filter(pk=self.pk)
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
        self.refresh_from_db()
        return "already" if self.status in RUNNING else "not_running"

    def save_steps(self, steps: list[dict]) -> bool:
        """Persist step progress while the run is live."""
        return self._transition(RUNNING, steps=steps)

    def beat(self) -> bool:
        """Write the runner's heartbeat."""
        return self._transition(RUNNING, heartbeat_at=timezone.now())

    def finish(self, status: str, *, outcome: dict, steps: list[dict]) -> bool:
        """running / interrupting → a terminal state, with the outcome."""
        if status not in TERMINAL:
            raise ValueError(f"{str(status)!r} is not a terminal status")
        return self._transition(
            RUNNING,
            status=status,
            outcome=outcome,
            steps=steps,
            finished_at=timezone.now(),
        )

    def reap(self) -> str | None:
        """End a run whose runner stopped heartbeating, so nothing stays stuck:
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
        """running / interrupting → lost: its runner stopped heartbeating."""
        steps = _all_skipped(self.steps, lost=True)
        return self._transition(
            RUNNING,
            status=Status.LOST,
            steps=steps,
            outcome=_stopped_outcome(steps),
            finished_at=timezone.now(),
        )


def _iso(moment) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _name(user) -> str:
    return user.get_username() if user is not None else ""


def _all_skipped(steps: list[dict], *, lost: bool = False) -> list[dict]:
    """Steps as they stand when a run ends without its runner: what had not
    finished is `skipped` (never started) or `interrupted` (started)."""
    result = []
    for step in steps:
        step = dict(step)
        if step.get("status") in ("pending", None):
            step["status"] = "skipped"
        elif lost and step.get("status") in ("running", "stalled"):
            step["status"] = "interrupted"
            step["error"] = "lost: the runner stopped heartbeating"
        result.append(step)
    return result


def _stopped_outcome(steps: list[dict]) -> dict:
    processed = [step["id"] for step in steps if step.get("status") == "succeeded"]
    return {
        "kind": "interrupted",
        "steps_processed": processed,
        "steps_not_processed": [
            step["id"] for step in steps if step["id"] not in processed
        ],
        "errors": {},
    }
