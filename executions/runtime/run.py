"""One execution under its supervisor: progress and logs out, interrupts in,
and how the run ends."""

from __future__ import annotations

import asyncio
import logging
import signal as signals
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..conf import conf
from ..models import Execution, Status
from . import broadcast, groups, store
from .spec import RunSpec
from .throttle import Throttled

logger = logging.getLogger(__name__)
quiet = Throttled(logger)

STATUS_FOR_OUTCOME = {
    "complete": Status.SUCCEEDED,
    "interrupted": Status.INTERRUPTED,
    "failed": Status.FAILED,
}
#: What a forced step that the supervisor stopped with its process reads.
FORCED = "forced: stopped with its execution process"
#: After SIGTERM to a forced execution's process group, how long until SIGKILL.
KILL_AFTER_TERM = 1.0
#: Log lines waiting for the watchers, at most: a slow channel layer loses
#: the oldest (the API still has them).
LOG_OUTBOX = 1000
#: Log lines a run holds for the database before it asks for a write ahead
#: of the supervisor's next round: a run logging at its cap then ends with
#: about this many to write on the way to "stopped", not a round's worth.
LOG_WRITE_LINES = 100


class RunObserver:
    """Something in this process that watches a run (the terminal's bars)."""

    def started(self, execution: Execution) -> None: ...

    def step(self, step: dict[str, Any]) -> None: ...

    def log(self, lines: list[dict[str, Any]]) -> None: ...

    def finished(self, execution: Execution) -> None: ...


class Run:
    """One execution under its supervisor."""

    def __init__(
        self,
        execution: Execution,
        *,
        local: bool,
        on_ack: Callable[[Run], None],
        on_logs_due: Callable[[Run], None] | None = None,
        observers: Iterable[RunObserver] = (),
    ) -> None:
        self.execution = execution
        self.id = str(execution.id)
        self.local = local
        self.spec = RunSpec.of(
            execution,
            progress_interval=conf.PROGRESS_INTERVAL,
            unwatched_interval=max(conf.PROGRESS_INTERVAL, conf.DB_PROGRESS_INTERVAL),
            log_rate=conf.LOG_RATE,
            log_burst=conf.LOG_BURST,
            # A terminal's own run keeps the priority its user gave it.
            nice=0 if local else conf.EXECUTION_NICE,
        )
        self.observers = list(observers)
        self.steps = {step["id"]: dict(step) for step in execution.steps}
        self.carried = set(self.spec.skip)
        self.report: dict[str, Any] | None = None
        #: Where the steps run (engines.py), given by the supervisor.
        self.engine: Any = None
        self._on_ack = on_ack
        self._on_logs_due = on_logs_due
        #: What the engine has been told: None, graceful (False) or force.
        self.delivered: bool | None = None
        self.dirty = False
        self._outbox: dict[str, dict] = {}
        self._outbox_ready = asyncio.Event()
        #: The status each step was last published with.
        self._published = {step["id"]: step["status"] for step in execution.steps}
        #: The last log line's seq; lines waiting for the database (bounded:
        #: what the limit would drop anyway) and for the watchers.
        self.log_seq = 0
        self.log_limit = conf.LOG_LIMIT
        self.log_dropped = execution.log_dropped
        self._log_unsaved: deque[dict] = deque(maxlen=self.log_limit)
        self._log_unsaved_dropped = 0
        self._log_outbox: deque[dict] = deque(maxlen=LOG_OUTBOX)
        #: Lines to send, or a drop count the watchers have not heard yet.
        self._log_event_due = False
        self._tracebacks_logged: set[str] = set()
        self._closing = False
        self.escalation: asyncio.Task | None = None
        #: Whether the engine samples for watchers (it starts so), and when a
        #: watcher last said it joined (monotonic; see runtime/watchers.py).
        self.watched = True
        self.joined_at = float("-inf")

    # -- progress out

    def on_step(self, step: dict[str, Any]) -> None:
        if step["id"] in self.carried:
            step["carried_over"] = True
        self.steps[step["id"]] = step
        if (
            step["status"] == "failed"
            and step.get("traceback")
            and step["id"] not in self._tracebacks_logged
            and not self.local  # a terminal shows it among the run's log lines
        ):
            self._tracebacks_logged.add(step["id"])
            logger.error(
                "step %s of execution %s failed:\n%s",
                step["id"],
                self.id,
                step["traceback"],
            )
        self.dirty = True
        self._outbox.pop(step["id"], None)
        self._outbox[step["id"]] = step
        self._outbox_ready.set()
        for observer in self.observers:
            observer.step(step)

    def on_log(self, lines: list[dict[str, Any]], dropped: int) -> None:
        """A batch of log lines from the engine: numbered, then on their way
        to the database and the watchers; neither may hold more than its
        bound, and what falls off is counted."""
        for line in lines:
            self.log_seq += 1
            line["seq"] = self.log_seq
        overflow = max(0, len(self._log_unsaved) + len(lines) - self.log_limit)
        self._log_unsaved.extend(lines)
        self._log_unsaved_dropped += dropped + overflow
        self.log_dropped += dropped + overflow
        self._log_outbox.extend(lines)
        self._log_event_due = bool(lines or dropped or overflow) or self._log_event_due
        self._outbox_ready.set()
        if self._on_logs_due is not None and len(self._log_unsaved) >= LOG_WRITE_LINES:
            self._on_logs_due(self)
        for observer in self.observers:
            observer.log(lines)

    def take_logs(self) -> tuple[list[dict], int] | None:
        """The lines and the drop count the database has not seen yet."""
        if not self._log_unsaved and not self._log_unsaved_dropped:
            return None
        lines, dropped = list(self._log_unsaved), self._log_unsaved_dropped
        self._log_unsaved.clear()
        self._log_unsaved_dropped = 0
        return lines, dropped

    def give_back_logs(self, lines: list[dict], dropped: int) -> None:
        """Lines the database did not take: before the newer ones, bounded."""
        room = self.log_limit - len(self._log_unsaved)
        kept = lines[max(0, len(lines) - room) :] if room > 0 else []
        self._log_unsaved.extendleft(reversed(kept))
        lost = len(lines) - len(kept)
        self._log_unsaved_dropped += dropped + lost
        self.log_dropped += lost
        self._log_event_due = self._log_event_due or lost > 0

    def saved_logs(self, total_dropped: int) -> None:
        """The database's drop count after a write (with what its limit
        dropped); what came since is not in it yet."""
        dropped = total_dropped + self._log_unsaved_dropped
        if dropped != self.log_dropped:
            self.log_dropped = dropped
            self._log_event_due = True
            self._outbox_ready.set()

    async def send_progress(self) -> None:
        while True:
            await self._outbox_ready.wait()
            if self._closing or self.report is not None:
                # The run's end sends the rest, once the row holds it. Once
                # the engine has reported, its last step events are in the
                # final write: saving them first would write them twice, on
                # the way to that write.
                return
            await self.drain_outbox()

    async def drain_outbox(self, *, saved: bool = False) -> None:
        """Send what waits for the watchers: step events, then log lines.
        `saved`: the row already holds every step as it stands (the run's
        end wrote it), so no progress write need come first."""
        group = groups.watch_group(self.id)
        self._outbox_ready.clear()
        while self._outbox:
            steps, self._outbox = list(self._outbox.values()), {}
            changed = {
                step["id"]: step["status"]
                for step in steps
                if self._published.get(step["id"]) != step["status"]
            }
            if changed:
                # Durable first: a step's start or end is on the row before
                # any watcher hears of it (a reaper may read the row next).
                self._published.update(changed)
                if not saved:
                    await self._save_now()
            # One message a tick for all the steps that moved: the layer's
            # cost is per message and per member, so fan-out stays flat.
            await broadcast.send(
                group,
                {"type": groups.PROGRESS, "execution_id": self.id, "steps": steps},
            )
        while self._log_event_due:
            count = min(groups.LOG_EVENT_LINES, len(self._log_outbox))
            lines = [self._log_outbox.popleft() for _ in range(count)]
            self._log_event_due = bool(self._log_outbox)
            await broadcast.send(
                group,
                {
                    "type": groups.LOG,
                    "execution_id": self.id,
                    "lines": lines,
                    "dropped": self.log_dropped,
                },
            )

    async def _save_now(self) -> None:
        self.dirty = False
        try:
            await store.save_progress({self.id: list(self.steps.values())})
        except Exception:
            self.dirty = True  # the next progress write retries
            quiet.warning("progress", "writing progress failed", exc_info=True)

    def stop_sending(self) -> None:
        """Stop the sender: what it has not sent goes out with the run's end
        (`drain_outbox(saved=True)`), after the row holds it."""
        self._closing = True
        self._outbox_ready.set()

    def watch(self, watched: bool) -> None:
        """Sample for watchers, or at the database's pace: told to the
        engine when it changes."""
        if watched != self.watched:
            self.watched = watched
            self.engine.watch(watched)

    def joined(self) -> None:
        """A watcher joined (its word on the control group)."""
        self.joined_at = time.monotonic()
        self.watch(True)

    # -- interrupts in

    def deliver(self, force: bool) -> None:
        """Tell the engine, once per change: a request, or its escalation."""
        if self.heard(force):
            self.engine.interrupt(force)

    def heard(self, force: bool) -> bool:
        """The engine has (or is about to be told) this much: the ladder
        starts on force. An execution process in the control group heard it
        itself (runtime/control.py): its acknowledgement says what it holds,
        and that needs no relay. True if it is news."""
        if self.delivered is True or (self.delivered is False and not force):
            return False
        self.delivered = force
        if force and self.escalation is None:
            self.escalation = asyncio.ensure_future(self._escalate())
        return True

    async def _escalate(self) -> None:
        """A forced run still alive after the grace period loses its process
        group: SIGTERM, then SIGKILL."""
        await asyncio.sleep(conf.FORCE_GRACE)
        logger.warning("execution %s ignored force: SIGTERM", self.id)
        self.engine.kill(signals.SIGTERM)
        await asyncio.sleep(KILL_AFTER_TERM)
        self.engine.kill(signals.SIGKILL)

    def on_ack(self) -> None:
        self._on_ack(self)

    # -- the end

    def conclude(self, failure: str | None) -> tuple[str, dict, dict]:
        """The row's final status, outcome and results."""
        if self.report is not None:
            outcome = self.report["outcome"]
            if not outcome["steps_processed"] and not outcome["steps_not_processed"]:
                outcome["steps_not_processed"] = list(self.steps)
                self.steps = {
                    key: {**step, "status": "skipped"}
                    if step["status"] == "pending"
                    else step
                    for key, step in self.steps.items()
                }
            return (
                STATUS_FOR_OUTCOME[outcome["kind"]],
                outcome,
                self.report.get("results") or {},
            )
        forced = self.delivered is True
        errors = {}
        for step_id, step in self.steps.items():
            if step["status"] in ("running", "stalled"):
                step["status"] = "interrupted" if forced else "failed"
                step["error"] = FORCED if forced else failure
                step["finished_at"] = time.time()
                if not forced:
                    errors[step_id] = failure
            elif step["status"] == "pending":
                step["status"] = "skipped"
        if not forced and not errors:
            errors["process"] = failure
        processed = [k for k, s in self.steps.items() if s["status"] == "succeeded"]
        outcome = {
            "kind": "interrupted" if forced else "failed",
            "steps_processed": processed,
            "steps_not_processed": [k for k in self.steps if k not in processed],
            "errors": errors,
        }
        return (Status.INTERRUPTED if forced else Status.FAILED), outcome, {}
