"""What a step receives: its params, its progress tracker, and the interrupt
state, so a long step can stop inside itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .interrupt import StepInterrupted
from .progress import ProgressTracker


class StepContext:
    def __init__(
        self,
        step_id: str,
        params: dict[str, Any],
        progress: ProgressTracker,
        should_stop: Callable[[], bool],
        resources: dict[str, Any] | None = None,
    ) -> None:
        self.step_id = step_id
        self.params = params
        self.progress = progress
        #: Shared by the steps of one run (Peace's `Resources`): a step puts
        #: what its dependents need here.
        self.resources = resources if resources is not None else {}
        self._should_stop = should_stop

    @property
    def interrupted(self) -> bool:
        """True once this step should stop early: a graceful interrupt under
        `finish-current` (or once a `poll-next-n` budget is spent, for steps
        not dispatched within it), or any forced interrupt."""
        return self._should_stop()

    def checkpoint(self) -> None:
        """Raise StepInterrupted if the step should stop here."""
        if self._should_stop():
            raise StepInterrupted(self.step_id)
