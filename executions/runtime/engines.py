"""Engines: where a run's steps execute, under its supervisor.

`ProcessEngine` runs them in an execution process of their own (servers,
workers); `LocalEngine` in the supervisor's own process (a terminal's run,
and tests that drive the engine in-process)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..engine import InterruptSignal
from ..engine.scheduler import ABANDONED
from .process import ExecutionProcess, describe_exit
from .run import FORCED, Run
from .spec import Report, run_spec


class ProcessEngine:
    """The run's steps in an execution process of their own."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.process = ExecutionProcess(run.spec, self._on_message)

    async def start(self) -> None:
        await self.process.start()

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "step":
            self.run.on_step(message["step"])
        elif kind == "log":
            self.run.on_log(message["lines"], message.get("dropped", 0))
        elif kind == "ack":
            self.run.heard(bool(message.get("force")))
            self.run.on_ack()
        elif kind == "report":
            self.run.report = message

    def interrupt(self, force: bool) -> None:
        self.process.interrupt(force)

    def watch(self, watched: bool) -> None:
        self.process.watch(watched)

    async def wait(self) -> str | None:
        """Wait for the process to end; why, if it did not report."""
        await self.process.wait()
        code = None
        if self.run.report is None:
            # It ended without saying how: its exit says why.
            code = await self.process.exit_code()
        # Whatever its steps started goes with it, and so does the process
        # itself if it is still on its way out after its last message.
        self.process.kill_group()
        self.process.close()
        if code is not None:
            return describe_exit(code)
        # A step the engine abandoned in its thread ended with the process.
        for step in self.run.steps.values():
            if step.get("error") == ABANDONED:
                step["error"] = FORCED
        return None

    def kill(self, number: int) -> None:
        self.process.kill_group(number)


class LocalEngine:
    """The run's steps in this process: a terminal's own run (Ctrl-C reaches
    it directly), and tests that drive the engine in-process."""

    def __init__(self, run: Run, signal: InterruptSignal | None) -> None:
        self.run = run
        self.signal = signal or InterruptSignal()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: over
                loop.call_soon_threadsafe(self.run.on_ack)

        self.signal.add_listener(on_signal)
        self.task = asyncio.ensure_future(
            run_spec(
                self.run.spec,
                self.signal,
                lambda state: self.run.on_step(state.to_dict()),
                self.run.on_log,
            )
        )

    def interrupt(self, force: bool) -> None:
        self.signal.request(force=force)

    def watch(self, watched: bool) -> None:
        """Nothing to change: a terminal shows every step event itself."""

    async def wait(self) -> str | None:
        report: Report = await self.task
        self.run.report = {
            "outcome": report.outcome.to_dict(),
            "results": report.results,
        }
        return None

    def kill(self, number: int) -> None:
        """Nothing to kill: this process is the terminal itself."""
