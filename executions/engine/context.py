"""What a step receives: its params, its progress tracker, its log, the
interrupt state (so a long step can stop inside itself), and `run` for the
subprocesses it starts."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence

from .interrupt import InterruptSignal, StepInterrupted
from .logs import LogSink, StepLog
from .params import Params
from .processes import run as run_process
from .processes import run_async as run_process_async
from .progress import ProgressTracker


class StepContext:
    def __init__(
        self,
        step_id: str,
        params: Params,
        progress: ProgressTracker,
        should_stop: Callable[[], bool],
        *,
        signal: InterruptSignal,
        restricted: bool = False,
        is_async: bool = False,
        sink: LogSink | None = None,
        forced: Callable[[], bool] = lambda: False,
    ) -> None:
        self.step_id = step_id
        #: The run's params, typed: `ctx.params.count` or `ctx.params["count"]`.
        self.params = params
        self.progress = progress
        #: True for a run started from a shared door (web, API, admin): the
        #: command's limits (`Cmd.restrict`) apply to what the step touches,
        #: checked again at the moment it touches it.
        self.restricted = restricted
        #: The step's log: `ctx.log.info("copied %s", name)`; always kept,
        #: whatever the project's logging configuration lets through.
        self.log = StepLog(sink, step_id)
        self._should_stop = should_stop
        self._signal = signal
        self._is_async = is_async
        self._sink = sink
        self._forced = forced

    @property
    def interrupted(self) -> bool:
        """True once this step should stop early: a graceful interrupt under
        `finish-current` (or once a `poll-next-n` budget is spent, for steps
        not dispatched within it), or any forced interrupt."""
        return self._should_stop()

    def checkpoint(self) -> None:
        """Raise StepInterrupted if the step should stop here."""
        if self._signal.requested and self._should_stop():
            raise StepInterrupted(self.step_id)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        on_interrupt: str = "wait",
    ) -> subprocess.CompletedProcess | Awaitable[subprocess.CompletedProcess]:
        """Run a subprocess, its stdout and stderr lines into this step's log.

        In a plain `def` step it blocks the step's thread and returns a
        `CompletedProcess`; in an `async def` step, await it. A non-zero
        exit raises `CommandFailed` (with the tail of its stderr) unless
        `check=False`. `on_interrupt`: on a graceful interrupt, `"wait"` for
        the child to finish, or send it `"sigint"` and wait. A forced
        interrupt kills it."""
        options = dict(
            step=self.step_id,
            sink=self._sink,
            should_stop=self._should_stop,
            forced=self._forced,
            cwd=cwd,
            env=env,
            check=check,
            on_interrupt=on_interrupt,
        )
        if self._is_async:
            return run_process_async(argv, **options)
        return run_process(argv, **options)
