"""Per-step progress and state.

`ProgressTracker.advance()` is on the hot path of a step (it may be called a
million times), so it only adds to a counter. The scheduler samples trackers
at a bounded rate and emits what changed: that is the coalescing (latest value
wins, the final value always goes out).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STALLED = "stalled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


ACTIVE_STEP_STATUSES = frozenset({StepStatus.RUNNING, StepStatus.STALLED})
UNITS = ("steps", "bytes")


def check_unit(unit: str) -> None:
    """Refuse a progress unit the outputs cannot show."""
    if unit not in UNITS:
        raise ValueError(f"Unknown progress unit {unit!r}: use {' or '.join(UNITS)}.")


class ProgressTracker:
    """What a step reports about itself: done of total, in a unit, a message."""

    __slots__ = ("done", "total", "unit", "message")

    def __init__(self, total: int | None = None, unit: str = "steps") -> None:
        check_unit(unit)
        self.done = 0
        self.total = total
        self.unit = unit
        self.message = ""

    def advance(self, n: int = 1) -> None:
        self.done += n

    def set(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def sample(self) -> tuple[int, int | None, str, str]:
        return (self.done, self.total, self.unit, self.message)


class Pace:
    """How often a scheduler samples its steps, which its owner may change
    while the run goes: an execution process nobody watches samples at the
    database's pace, and at the watchers' again once one joins. Used from
    the scheduler's event loop only, by one sleeper (its sampler)."""

    __slots__ = ("interval", "_waiting")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._waiting: asyncio.Future | None = None

    def set(self, interval: float) -> None:
        """Sample every `interval` seconds from now: a quicker pace ends the
        wait in progress, so the next sample is not a slow pause away."""
        quicker = interval < self.interval
        self.interval = interval
        if quicker and self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or until the pace quickens."""
        loop = asyncio.get_running_loop()
        self._waiting = waiting = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiting)
        try:
            await waiting
        finally:
            timer.cancel()
            self._waiting = None


def _wake(waiting: asyncio.Future) -> None:
    if not waiting.done():
        waiting.set_result(None)


@dataclass
class StepState:
    """A step's state as outputs see it; `to_dict()` is the contract's shape."""

    id: str
    title: str
    after: tuple[str, ...] = ()
    status: StepStatus = StepStatus.PENDING
    done: int = 0
    total: int | None = None
    unit: str = "steps"
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    #: The failure's full traceback (the step's own frames), if it raised.
    traceback: str | None = None
    #: What the step returned (JSON), once it has succeeded. Not in
    #: `to_dict()`: progress goes out many times a second, a result once.
    result: Any = field(default=None, repr=False)
    # Not part of the snapshot: when progress last changed (monotonic).
    last_change: float = field(default=0.0, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "after": list(self.after),
            "status": str(self.status),
            "progress": {"done": self.done, "total": self.total, "unit": self.unit},
            "message": self.message,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error": self.error,
            "traceback": self.traceback,
        }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    # Engine timestamps are wall-clock seconds; outputs want ISO 8601 UTC.
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
