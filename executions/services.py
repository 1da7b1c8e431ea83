"""The one service every door calls: start, interrupt, look up.

Views, the JSON API, websocket consumers, admin actions and management
commands are thin doors onto these functions, so a permission, an audit field
or a state rule lives here and nowhere else. `user=None` means the terminal:
someone with a shell on the machine, who is not limited.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, models, transaction

from . import broadcast, groups
from .conf import conf
from .engine import InterruptStrategy, ParamsError, UnknownCmd, registry
from .engine.progress import StepState
from .errors import Forbidden, NotResumable, NotRunning, UnknownExecution
from .models import Execution, Source, Status

__all__ = [
    "Forbidden",
    "InterruptResult",
    "Interruption",
    "NotResumable",
    "NotRunning",
    "ParamsError",
    "PermissionDenied",
    "StartResult",
    "UnknownCmd",
    "UnknownExecution",
    "get_execution",
    "list_executions",
    "request_interrupt",
    "resume_execution",
    "start_execution",
]

RESUMABLE = (Status.INTERRUPTED, Status.FAILED, Status.LOST)
MAX_REASON = 2000
#: The longest strategy text: `poll-next-n:` and nine digits fit.
MAX_STRATEGY = 21
STRATEGY_TOO_LONG = (
    f"must be at most {MAX_STRATEGY} characters: finish-current, "
    "poll-next-n:N (N a whole number) or ignore"
)
# C0 and C1 controls but tab and newline, and the bidirectional marks,
# embeddings, overrides and isolates (U+200E/F, U+202A-E, U+2066-9) that can
# make a reason shown in the admin or a terminal read as something else.
# (NUL is among them: PostgreSQL cannot store it.)
_UNSAFE_IN_REASON = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
PERMISSIONS = {
    "view": "executions.view_execution",
    "add": "executions.add_execution",
    "interrupt": "executions.interrupt_execution",
}


@dataclass(frozen=True)
class StartResult:
    execution: Execution
    #: False when the profile was busy and this is the active execution.
    created: bool


class Interruption(models.TextChoices):
    """What an interrupt request did; the label is what every door says."""

    INTERRUPTED = "interrupted", "Interrupted before it started: no step ran."
    REQUESTED = (
        "requested",
        "Interrupt requested: the execution stops at its next safe point.",
    )
    ESCALATED = "escalated", "Force requested: steps in flight are being cancelled."
    ALREADY = "already", "An interrupt was already requested."


@dataclass(frozen=True)
class InterruptResult:
    execution: Execution
    result: Interruption


def worker_mode() -> bool:
    return conf.RUNNER == "worker"


def can(user, action: str) -> bool:
    """The one permission check: `view`, `add` or `interrupt`."""
    if user is None:
        return True
    return user.is_active and user.has_perm(PERMISSIONS[action])


def check(user, action: str) -> None:
    if not can(user, action):
        raise Forbidden(f"You do not have permission to {action} executions.")


def clean_reason(reason: str | None) -> str:
    """A reason as it is kept: without control and bidirectional-override
    characters (tab and newline stay)."""
    return _UNSAFE_IN_REASON.sub("", reason or "")


def parse_id(execution_id: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(execution_id))
    except (TypeError, ValueError, AttributeError):
        raise UnknownExecution(execution_id) from None


def get_execution(execution_id: Any, *, user=None) -> Execution:
    check(user, "view")
    try:
        return Execution.objects.get(pk=parse_id(execution_id))
    except Execution.DoesNotExist:
        raise UnknownExecution(execution_id) from None


def list_executions(*, user=None, status: str | None = None):
    check(user, "view")
    queryset = Execution.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    return queryset


def start_execution(
    cmd: str,
    params: Any = None,
    *,
    profile: str | None = None,
    strategy: str | None = None,
    user=None,
    source: str,
    resumed_from: Execution | None = None,
    dispatch: bool = True,
    by_name: str = "",
) -> StartResult:
    """Validate and record a new execution, then hand it to the runner.

    For a busy profile, return the active execution instead (idempotent
    invocation); the database's conditional unique constraint decides races.
    With `dispatch=False` the caller runs it (the terminal door).
    """
    check(user, "add")
    command = registry.get(cmd)
    cleaned = command.clean_params(params)
    if source != Source.CLI and command.restrict is not None:
        command.restrict(cleaned)
    # The length first: Python refuses to parse an int of over 4300 digits,
    # and its message is no answer for a user.
    if strategy is not None and len(strategy) > MAX_STRATEGY:
        raise ParamsError({"strategy": STRATEGY_TOO_LONG})
    try:
        strategy_text = str(InterruptStrategy.parse(strategy))
    except ValueError as error:
        raise ParamsError({"strategy": str(error)}) from None
    # A blank profile is no profile, at every door (forms strip it already).
    profile = (profile or "").strip() or None
    if profile is not None and (len(profile) > 200 or not profile.isprintable()):
        raise ParamsError({"profile": "must be at most 200 printable characters"})
    steps = [
        StepState(
            id=step.id,
            title=step.title,
            after=step.after,
            unit=step.unit,
            total=step.total,
        )
        for step in command.build(cleaned)
    ]
    try:
        with transaction.atomic():
            execution = Execution.objects.create(
                cmd=command.name,
                title=command.title,
                params=cleaned,
                profile=profile,
                strategy=strategy_text,
                steps=[state.to_dict() for state in steps],
                created_by=user,
                created_by_name=by_name or (user.get_username() if user else ""),
                created_from=source,
                resumed_from=resumed_from,
                queue=groups.WORKER_CHANNEL if dispatch and worker_mode() else "",
            )
    except IntegrityError:
        active = Execution.objects.active().filter(profile=profile).first()
        if active is None:
            raise  # not the profile constraint after all
        check(user, "view")  # the answer is someone's active run
        return StartResult(active, created=False)
    broadcast.status_changed_on_commit(execution.snapshot(), groups.CREATED)
    if dispatch:
        from .pool import dispatch as dispatch_to_runner

        transaction.on_commit(lambda: dispatch_to_runner(execution.id))
    return StartResult(execution, created=True)


def resume_execution(
    execution_id: Any,
    *,
    user=None,
    source: str,
    dispatch: bool = True,
    by_name: str = "",
) -> StartResult:
    """Start the same command and params again, linked to the old execution;
    the steps that succeeded there are not run again (Peace's stepwise
    resumability)."""
    check(user, "add")
    original = get_execution(execution_id, user=user)
    if original.status not in RESUMABLE:
        raise NotResumable(original)
    return start_execution(
        original.cmd,
        original.params,
        profile=original.profile,
        strategy=original.strategy,
        user=user,
        source=source,
        resumed_from=original,
        dispatch=dispatch,
        by_name=by_name,
    )


def request_interrupt(
    execution_id: Any,
    *,
    user=None,
    source: str,
    force: bool = False,
    reason: str = "",
    by_name: str = "",
) -> InterruptResult:
    """Record the request on the row (durable), then push it to the runner
    through the channel layer after commit (fast). Idempotent; `force` may
    escalate a pending request. Raises NotRunning for a finished execution.
    Interrupting takes the view permission too: the answer shows the run."""
    check(user, "interrupt")
    if source not in Source.values:
        raise ValueError(f"Unknown source {source!r}.")
    reason = clean_reason(reason)
    if len(reason) > MAX_REASON:
        raise ParamsError({"reason": f"must be at most {MAX_REASON} characters"})
    execution = get_execution(execution_id, user=user)
    result = execution.record_interrupt(
        source=source, user=user, by_name=by_name, force=force, reason=reason
    )
    if result == "not_running":
        raise NotRunning(execution)
    if result in ("requested", "escalated"):
        broadcast.interrupt_on_commit(execution.id, force=execution.interrupt_force)
    if result != "already":
        # record_interrupt left the instance as the row now stands.
        event = groups.FINISHED if execution.is_finished else groups.STATUS
        broadcast.status_changed_on_commit(execution.snapshot(), event)
    return InterruptResult(execution, Interruption(result))
