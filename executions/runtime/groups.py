"""Channel layer group names and event types: the one place they are made.

Names come from a UUID only, never from raw input, and fit the layer's rule
(`^[a-zA-Z0-9._-]+$`, under 100 characters).
"""

from __future__ import annotations

import uuid

#: Every list page watches this group: executions created, status changes.
LIST_GROUP = "executions.list"

# Event types, namespaced: `execution.progress` is handled by `execution_progress`.
CREATED = "execution.created"
#: Step progress: every step that changed since the last tick, in one message
#: (each becomes a `step` event on the socket).
PROGRESS = "execution.progress"
LOG = "execution.log"
#: Log lines in one `execution.log` event, at most.
LOG_EVENT_LINES = 200
STATUS = "execution.status"
FINISHED = "execution.finished"
INTERRUPT = "execution.interrupt"
#: To the control group, from a watcher that just joined: sample for watchers.
WATCHED = "execution.watched"
LIST_CHANGED = "executions.changed"
RUN_REQUEST = "executions.run"

#: The worker channel `runworker executions` consumes in worker mode.
WORKER_CHANNEL = "executions"


def watch_group(execution_id: uuid.UUID | str) -> str:
    """Browsers watching one execution."""
    return f"execution.{uuid.UUID(str(execution_id)).hex}"


def control_group(execution_id: uuid.UUID | str) -> str:
    """The supervisor of one execution: interrupts go here, and word of a
    watcher that joined."""
    return f"execution-control.{uuid.UUID(str(execution_id)).hex}"
