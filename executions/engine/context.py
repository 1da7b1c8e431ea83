"""What a step receives: its params, its progress tracker, and the interrupt
state, so a long step can stop inside itself."""

from __future__ import annotations

from collections.abc import Callable

from .interrupt import StepInterrupted
from .params import Params
from .progress import ProgressTracker


class StepContext:
    def __init__(
        self,
        step_id: str,
        params: Params,
        progress: ProgressTracker,
        should_stop: Callable[[], bool],
        *,
        restricted: bool = False,
    ) -> None:
        self.step_id = step_id
        #: The run's params, typed: `ctx.params.count` or `ctx.params["count"]`.
        self.params = params
        self.progress = progress
        #: True for a run started from a shared door (web, API, admin): the
        #: command's limits (`Cmd.restrict`) apply to what the step touches,
        #: checked again at the moment it touches it.
        self.restricted = restricted
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
