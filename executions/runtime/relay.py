"""With a channel layer that no other process shares (the embedded default,
the in-memory layer), a terminal's run and the server share only the
database. The server then relays what changes in the rows it does not
supervise to its own watchers, every `EXECUTIONS_RELAY_INTERVAL`: a run
started in a terminal appears on the list page, its bars move, its log lines
come and its end is seen, as if it had been pushed."""

from __future__ import annotations

import asyncio
import logging

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db.models import Max
from django.utils import timezone

from ..conf import conf
from ..models import Execution, InterruptRequest, LogLine
from . import broadcast, groups, store
from .throttle import Throttled

logger = logging.getLogger(__name__)
quiet = Throttled(logger)

FIELDS = (
    "status",
    "interrupt_requested_at",
    "interrupt_force",
    "interrupt_delivered_at",
)


#: Log lines relayed per execution and interval, at most (more wait).
LOG_LINES = 1000


def needed() -> bool:
    return isinstance(get_channel_layer(), InMemoryChannelLayer)


@store.runtime_database
def _changed_rows(supervisor: str, since, seen: dict) -> list[tuple]:
    """Rows not supervised here that are active or ended since `since`, with
    what changed in each since `seen`: (execution, is_new, changed steps,
    status changed, new log lines). A row seen for the first time starts at
    its last log line: the page reads the earlier ones from the API."""
    rows = (
        Execution.objects.changed_since(since)
        .exclude(supervisor=supervisor)
        .select_related("resumed_from")
    )
    changes = []
    returned = set()
    for execution in rows:
        key = str(execution.id)
        returned.add(key)
        state = tuple(getattr(execution, field) for field in FIELDS)
        steps = {step["id"]: step for step in execution.steps}
        before = seen.get(key)
        if before is None:
            last = execution.log_lines.aggregate(last=Max("seq"))["last"] or 0
            seen[key] = (state, steps, last)
            changes.append((execution, True, [], True, []))
            continue
        lines = [
            line.snapshot()
            for line in LogLine.objects.filter(execution=execution).page(
                after=before[2], size=LOG_LINES
            )
        ]
        seen[key] = (state, steps, lines[-1]["seq"] if lines else before[2])
        changed_steps = [step for k, step in steps.items() if before[1].get(k) != step]
        if changed_steps or state != before[0] or lines:
            changes.append((execution, False, changed_steps, state != before[0], lines))
    for key in set(seen) - returned:
        del seen[key]  # ended longer ago than the window: no longer watched
    # What _tell shows in full, read here in one go: it then needs no query.
    InterruptRequest.attach(change[0] for change in changes if change[1] or change[3])
    return changes


async def relay(supervisor: str) -> None:
    """Run for the server's life."""
    seen: dict[str, tuple] = {}
    since = timezone.now()
    while True:
        await asyncio.sleep(conf.RELAY_INTERVAL)
        checked = timezone.now()
        try:
            changes = await _changed_rows(supervisor, since, seen)
        except Exception:
            quiet.warning("relay", "relaying database changes failed", exc_info=True)
            continue
        since = checked - timezone.timedelta(seconds=conf.RELAY_INTERVAL)
        for execution, new, steps, status_changed, lines in changes:
            await _tell(execution, new, steps, status_changed, lines)


async def _tell(execution: Execution, new: bool, steps, status_changed, lines) -> None:
    group = groups.watch_group(execution.id)
    if steps:
        await broadcast.send(
            group,
            {
                "type": groups.PROGRESS,
                "execution_id": str(execution.id),
                "steps": steps,
            },
        )
    for start in range(0, len(lines), groups.LOG_EVENT_LINES):
        await broadcast.send(
            group,
            {
                "type": groups.LOG,
                "execution_id": str(execution.id),
                "lines": lines[start : start + groups.LOG_EVENT_LINES],
                "dropped": execution.log_dropped,
            },
        )
    if new:
        await broadcast.status_changed(execution.snapshot(), groups.CREATED)
    if status_changed:
        event = groups.FINISHED if execution.is_finished else groups.STATUS
        await broadcast.status_changed(execution.snapshot(), event)
