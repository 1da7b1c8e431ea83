"""Recording an interrupt request: durable first, then pushed.

The service calls this for every door, after its checks; the runtime calls
it for the requests it makes itself (timeouts, shutdown)."""

from __future__ import annotations

import uuid

from ..models import Execution
from . import broadcast, groups


def record(
    execution: Execution,
    *,
    source: str,
    user=None,
    by_name: str = "",
    force: bool = False,
    reason: str = "",
) -> str:
    """Record the request on the row in one conditional UPDATE, then, after
    commit, push it to the execution's supervisor and tell the watchers.
    Returns the model's result (`Execution.record_interrupt`)."""
    result = execution.record_interrupt(
        source=source, user=user, by_name=by_name, force=force, reason=reason
    )
    if result in ("requested", "escalated") and execution.status != "queued":
        broadcast.interrupt_on_commit(execution.id, force=execution.interrupt_force)
    if result not in ("already", "not_running"):
        # record_interrupt left the instance as the row now stands.
        event = groups.FINISHED if execution.is_finished else groups.STATUS
        broadcast.status_changed_on_commit(execution.snapshot(), event)
    return result


def record_running(
    execution_id: uuid.UUID,
    *,
    source: str,
    user=None,
    by_name: str = "",
    force: bool = False,
    reason: str = "",
) -> Execution | None:
    """The common case, without reading the row first: a running execution
    with no request yet is asked to stop (`requested`), durably, then pushed
    and told, as `record` does. The push goes as soon as the row holds the
    request, ahead of the audit record; the watchers hear after that, since
    what they are shown lists it. Returns the execution as the row now
    stands; None, having changed and sent nothing, for anything else: read
    the row and call `record`."""
    execution = Execution.record_interrupt_of_running(
        execution_id,
        source=source,
        user=user,
        by_name=by_name,
        force=force,
        reason=reason,
        recorded=lambda: broadcast.interrupt_on_commit(execution_id, force=force),
    )
    if execution is not None:
        broadcast.status_changed_on_commit(execution.snapshot(), groups.STATUS)
    return execution
