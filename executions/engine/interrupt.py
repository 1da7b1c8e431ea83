"""The interrupt signal a runner sets and the engine polls, and the strategies
that decide what an interrupt means for the steps of a run (Peace's
`InterruptSignal` and `InterruptStrategy`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass


class StepInterrupted(Exception):
    """Raised by `StepContext.checkpoint()` to stop a step inside itself."""


class InterruptSignal:
    """A thread-safe, one-way flag: once requested it stays requested.

    `force` can only escalate. Listeners are called (from whichever thread
    requested) whenever the signal changes, so an event loop can wake up.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Plain attributes, read-only outside `request()`: a step's checkpoint
        # reads `requested` once while nothing is asked, as cheap as advance().
        self.requested = False
        self.force = False
        self._listeners: list[Callable[[], None]] = []

    def request(self, force: bool = False) -> bool:
        """Request an interrupt; return True if this changed the signal."""
        with self._lock:
            changed = not self.requested or (force and not self.force)
            self.requested = True
            self.force = self.force or force
            listeners = list(self._listeners) if changed else []
        for listener in listeners:
            listener()
        return changed

    def add_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


_POLL_NEXT_N = re.compile(r"^poll-next-n:(\d+)$")


@dataclass(frozen=True)
class InterruptStrategy:
    """What an interrupt does to a run.

    - `finish-current`: steps in flight finish (or stop at their own
      checkpoint); no new step is dispatched.
    - `poll-next-n:N`: N more steps are dispatched after the signal is first
      seen, and they run to the end; then dispatching stops as with
      `finish-current`. `poll-next-n:0` is `finish-current`.
    - `ignore`: the signal is recorded and the run goes on to the end.

    Force overrides every strategy: a user must always be able to stop a run.
    """

    kind: str = "finish-current"
    n: int = 0

    KINDS = ("finish-current", "poll-next-n", "ignore")

    @classmethod
    def parse(cls, text: str | None) -> InterruptStrategy:
        if text is None or text == "" or text == "finish-current":
            return cls("finish-current")
        if text == "ignore":
            return cls("ignore")
        match = _POLL_NEXT_N.match(text)
        if match:
            return cls("poll-next-n", int(match.group(1)))
        raise ValueError(
            f"Unknown interrupt strategy {text!r}: use finish-current, "
            "poll-next-n:N (N a whole number) or ignore."
        )

    def __str__(self) -> str:
        if self.kind == "poll-next-n":
            return f"poll-next-n:{self.n}"
        return self.kind

    @property
    def grace(self) -> int:
        """How many steps may still be dispatched once the signal is seen."""
        return self.n if self.kind == "poll-next-n" else 0
