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
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from . import permissions
from .conf import conf
from .engine import InterruptStrategy, ParamsError, UnknownCmd, registry
from .engine.progress import StepState
from .errors import Forbidden, NotResumable, NotRunning, UnknownExecution
from .models import Execution, LogLine, Source, Status
from .runtime import broadcast, groups, interrupts, reaper
from .runtime.dispatch import dispatch as hand_over
from .runtime.dispatch import supervisor_identity
from .runtime.identity import is_gone

__all__ = [
    "Forbidden",
    "InterruptResult",
    "Interruption",
    "NotResumable",
    "NotRunning",
    "ParamsError",
    "PermissionDenied",
    "LogPage",
    "StartResult",
    "UnknownCmd",
    "UnknownExecution",
    "get_execution",
    "list_executions",
    "read_log",
    "request_interrupt",
    "resume_execution",
    "start_execution",
]

RESUMABLE = (Status.INTERRUPTED, Status.FAILED, Status.LOST)
#: Log lines in one page of `read_log`, at most.
LOG_PAGE = 1000
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
    FORCED = "forced", "Forced interrupt requested: steps in flight are cancelled now."
    ESCALATED = "escalated", "Force requested: steps in flight are being cancelled."
    ALREADY = "already", "An interrupt was already requested."
    ENDED = (
        "ended",
        "Nobody was running it any more (its supervisor is gone): ended now.",
    )


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
    permissions.preload(user)
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
    return _get(parse_id(execution_id), execution_id)


def _get(pk: uuid.UUID, execution_id: Any) -> Execution:
    try:
        return Execution.objects.get(pk=pk)
    except Execution.DoesNotExist:
        raise UnknownExecution(execution_id) from None


def commands() -> list:
    """The commands that can be started, by name."""
    return list(registry)


def command(name: str):
    """The command called `name`, or None."""
    return registry.get(name) if name in registry else None


def reap_orphans() -> list[dict]:
    """End the rows whose supervisor is gone (the commands reap on their way)."""
    return reaper.reap_now()


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
    supervisor: str = "",
    by_name: str = "",
    timeout: Any = None,
    force_after: Any = None,
) -> StartResult:
    """Validate and record a new execution, then hand it to its supervisor.

    For a busy profile, return the active execution instead (idempotent
    invocation); the database's conditional unique constraint decides races.
    With `dispatch=False` the caller runs it (the terminal door), under its
    own `supervisor` identity, so the row is reaped if the caller dies
    before it claims it. `timeout` and `force_after` are seconds (defaults:
    EXECUTIONS_DEFAULT_TIMEOUT, EXECUTIONS_DEFAULT_FORCE_AFTER).
    """
    check(user, "add")
    command = registry.get(cmd)
    cleaned = command.clean_params(params, restricted=source != Source.CLI)
    # The length first: Python refuses to parse an int of over 4300 digits,
    # and its message is no answer for a user.
    if strategy is not None and len(strategy) > MAX_STRATEGY:
        raise ParamsError({"strategy": STRATEGY_TOO_LONG})
    try:
        strategy_text = str(InterruptStrategy.parse(strategy))
    except ValueError as error:
        raise ParamsError({"strategy": str(error)}) from None
    limits = {
        "timeout": _seconds("timeout", timeout, conf.DEFAULT_TIMEOUT),
        "force_after": _seconds("force_after", force_after, conf.DEFAULT_FORCE_AFTER),
    }
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
                supervisor=supervisor_identity() if dispatch else supervisor,
                **limits,
            )
    except IntegrityError:
        if resumed_from is not None and resumed_from.resumed_by.exists():
            raise NotResumable(resumed_from, already=True) from None
        active = Execution.objects.active().filter(profile=profile).first()
        if active is None:
            raise  # not the profile constraint after all
        check(user, "view")  # the answer is someone's active run
        return StartResult(active, created=False)
    broadcast.status_changed_on_commit(execution.snapshot(), groups.CREATED)
    if dispatch:
        transaction.on_commit(lambda: hand_over(execution.id))
    return StartResult(execution, created=True)


#: The longest timeout or force_after accepted: a year, in seconds.
MAX_SECONDS = 365 * 24 * 3600


def _seconds(name: str, value: Any, default: float | None) -> float | None:
    """A positive number of seconds, or None for never."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ParamsError({name: "must be a number of seconds"})
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float: out of range
        seconds = float("inf")
    except (TypeError, ValueError):
        raise ParamsError({name: "must be a number of seconds"}) from None
    if not 0 < seconds <= MAX_SECONDS:
        raise ParamsError(
            {name: f"must be more than 0 and at most {MAX_SECONDS} seconds"}
        )
    return seconds


def resume_execution(
    execution_id: Any,
    *,
    user=None,
    source: str,
    dispatch: bool = True,
    supervisor: str = "",
    by_name: str = "",
) -> StartResult:
    """Start the same command and params again, linked to the old execution;
    the steps that succeeded there are not run again (Peace's stepwise
    resumability)."""
    check(user, "add")
    original = get_execution(execution_id, user=user)
    if original.status not in RESUMABLE:
        raise NotResumable(original)
    if original.resumed_by.exists():
        raise NotResumable(original, already=True)
    return start_execution(
        original.cmd,
        original.params,
        profile=original.profile,
        strategy=original.strategy,
        user=user,
        source=source,
        resumed_from=original,
        dispatch=dispatch,
        supervisor=supervisor,
        by_name=by_name,
        timeout=original.timeout,
        force_after=original.force_after,
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
    Interrupting takes the view permission too: the answer shows the run.

    The common case, a running execution with no request yet, is one
    conditional UPDATE that returns the row, with no read before it; the
    others (queued, pending, finished, unknown) read the row after that
    UPDATE matched nothing. The permissions are loaded once (Django caches
    them on the user), so a door that checks first, to refuse before it
    reads its input, costs no query here."""
    check(user, "interrupt")
    if source not in Source.values:
        raise ValueError(f"Unknown source {source!r}.")
    reason = clean_reason(reason)
    if len(reason) > MAX_REASON:
        raise ParamsError({"reason": f"must be at most {MAX_REASON} characters"})
    check(user, "view")
    pk = parse_id(execution_id)
    request = dict(
        source=source, user=user, by_name=by_name, force=force, reason=reason
    )
    execution = interrupts.record_running(pk, **request)
    if execution is not None:
        result = Interruption.FORCED if force else Interruption.REQUESTED
    else:
        execution = _get(pk, execution_id)
        result = interrupts.record(execution, **request)
        if result == "not_running":
            raise NotRunning(execution)
        if force and result == Interruption.REQUESTED:
            result = Interruption.FORCED
    if execution.is_active and _supervisor_gone(execution):
        # Nobody runs it: waiting would leave it stuck. End it now.
        for snapshot in reaper.reap_now():
            if snapshot["id"] == str(execution.id):
                execution.refresh_from_db()
                return InterruptResult(execution, Interruption.ENDED)
    return InterruptResult(execution, Interruption(result))


@dataclass(frozen=True)
class LogPage:
    """A page of an execution's log: its lines, the seq to continue after,
    and how many lines of the execution were not kept."""

    lines: list[dict[str, Any]]
    next: int
    dropped: int

    def as_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "next": self.next, "dropped": self.dropped}


def read_log(
    execution_id: Any,
    *,
    user=None,
    step: str | None = None,
    after: int | str | None = 0,
    size: int = LOG_PAGE,
) -> LogPage:
    """Up to `size` log lines after seq `after` (a number, or its digits as
    a query string gives them), of one step if given (it must be one of the
    execution's). The execution is looked up first: an unknown one or a
    forbidden user is answered so whatever else the request says."""
    execution = get_execution(execution_id, user=user)
    after = _seq(after)
    if step is not None and step not in {s["id"] for s in execution.steps}:
        raise ParamsError({"step": f"execution {execution.id} has no step {step!r}"})
    lines = [
        line.snapshot()
        for line in LogLine.objects.filter(execution=execution).page(
            step=step, after=after, size=size
        )
    ]
    return LogPage(
        lines,
        next=lines[-1]["seq"] if lines else after,
        dropped=execution.log_dropped,
    )


def _seq(after: int | str | None) -> int:
    if after is None or after == "":
        return 0
    if isinstance(after, int) and not isinstance(after, bool) and after >= 0:
        return after
    # The length first: int() refuses over 4300 digits; a seq fits in 19.
    if (
        isinstance(after, str)
        and len(after) <= 19
        and after.isascii()
        and after.isdigit()
    ):
        return int(after)
    raise ParamsError({"after": "must be a log line's seq: a whole number, 0 or more"})


def _supervisor_gone(execution: Execution) -> bool:
    """From the row as just read: no query on the interrupt's path."""
    if execution.status == Status.QUEUED and not execution.supervisor:
        return False  # waiting in a queue for a worker: nobody is late yet
    if is_gone(execution.supervisor):
        return True
    cutoff = timezone.now() - timedelta(seconds=conf.HEARTBEAT_TIMEOUT)
    if execution.status == Status.QUEUED:
        return execution.created_at < cutoff
    return execution.heartbeat_at is None or execution.heartbeat_at < cutoff
