"""The terminal's live view of a run: a bar per step and an overall row,
drawn by rich, with the steps' log lines above the bars.

Its own module, so that rich (tens of milliseconds to import) is loaded by a
run that shows bars, after its execution ID is printed, and never by
`execute --json`, `--list` or the other commands."""

from __future__ import annotations

import math
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from . import display
from .models import Execution
from .runtime.run import RunObserver
from .terminal import STATUS_STYLE

#: The overall bar counts work in thousandths of a step.
SCALE = 1000

LEVEL_STYLE = {
    "debug": "dim",
    "warning": "yellow",
    "error": "red",
    "critical": "bold red",
    "stderr": "yellow",
}
#: What `--quiet` still shows: a failure's traceback among them.
QUIET_LEVELS = frozenset({"error", "critical"})


class _Amount(TextColumn):
    """done/total in the step's unit: bytes human-readable, steps as M/N."""

    def __init__(self) -> None:
        super().__init__("")
        self._bytes = DownloadColumn()
        self._steps = MofNCompleteColumn()

    def render(self, task):
        unit = task.fields.get("unit")
        if unit == "bytes":
            return self._bytes.render(task)
        if unit == "overall":
            return Text(f"{int(task.completed) // SCALE}/{int(task.total) // SCALE}")
        return self._steps.render(task)


class _Note(TextColumn):
    """A step's message; on the overall row, the countdown to force."""

    def __init__(self) -> None:
        super().__init__("", style="dim")

    def render(self, task):
        deadline = task.fields.get("force_at")
        if deadline is not None:
            left = math.ceil(deadline - time.monotonic())
            text = f"forcing in {left} s" if left > 0 else "forcing now"
            return Text(text, style="bold yellow")
        return Text(task.fields.get("message", ""), style="dim")


class _Left(ProgressColumn):
    """Time left, only while there is some to estimate."""

    def __init__(self) -> None:
        super().__init__()
        self._left = TimeRemainingColumn()

    def render(self, task):
        if task.finished or not task.started:
            return Text("")
        return self._left.render(task)


class TerminalBars(RunObserver):
    """Rich progress bars on a terminal; one line per step change elsewhere
    (a pipe or a log file gets a readable record, not escape codes). The
    steps' log lines go above the bars (`quiet`: only errors).

    `stream` is the real output, taken before the run replaces `sys.stdout`
    with its log capture: the bars are never part of the log."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self.console = Console(file=stream, highlight=False)
        self.quiet = quiet
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.fields[status_text]}", justify="left"),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            _Amount(),
            _Left(),
            TimeElapsedColumn(),
            _Note(),
            console=self.console,
            auto_refresh=True,
            refresh_per_second=10,
        )
        self.tasks: dict[str, TaskID] = {}
        self._status: dict[str, str] = {}
        self._steps: dict[str, dict] = {}
        self.overall: TaskID | None = None
        #: The run is over: Ctrl-C has nothing left to stop.
        self.ended = False

    def started(self, execution: Execution) -> None:
        self._steps = {step["id"]: step for step in execution.steps}
        self.overall = self.progress.add_task(
            "[bold]all steps[/]",
            total=SCALE * max(len(execution.steps), 1),
            unit="overall",
            message="",
            status_text=_badge(execution.status),
        )
        for step in execution.steps:
            progress = step["progress"]
            self.tasks[step["id"]] = self.progress.add_task(
                step["title"],
                total=progress["total"],
                completed=progress["done"],
                start=False,
                unit=progress["unit"],
                message="",
                status_text=_badge(step["status"]),
            )
            self._status[step["id"]] = step["status"]
        if self.live:
            self.progress.start()

    def step(self, step: dict) -> None:
        status = step["status"]
        task = self.tasks[step["id"]]
        self._steps[step["id"]] = step
        self._update_overall()
        if status == "running" and self._status.get(step["id"]) == "pending":
            self.progress.start_task(task)
        progress = step["progress"]
        self.progress.update(
            task,
            completed=progress["done"],
            total=progress["total"],
            message=(step.get("message") or "")[:60],
            status_text=_badge(status),
        )
        if status != self._status.get(step["id"]):
            self._status[step["id"]] = status
            if not self.live:
                line = f"{status:<11} {step['id']}"
                if step.get("error"):
                    line += f": {step['error']}"
                self.console.print(line, markup=False)
        if status not in ("pending", "running", "stalled"):
            self.progress.stop_task(task)

    def interrupt_requested(self, *, force: bool, force_after: float | None) -> None:
        """Show the countdown to force on the overall row, or end it."""
        if self.overall is None:
            return
        self.progress.update(self.overall, status_text=_badge("interrupting"))
        pending = not force and force_after
        deadline = time.monotonic() + force_after if pending else None
        self.progress.update(self.overall, force_at=deadline)

    def log(self, lines: list[dict]) -> None:
        for line in lines:
            if self.quiet and line["level"] not in QUIET_LEVELS:
                continue
            where = line["step"] or "run"
            self.console.print(
                f"{where} │ {line['text']}",
                style=LEVEL_STYLE.get(line["level"]),
                markup=False,
                # A wrapped line above live bars must be wrapped by rich,
                # which then counts it; a pipe keeps each line whole.
                soft_wrap=not self.live,
            )

    def finished(self, execution: Execution) -> None:
        self.ended = True
        if self.overall is not None:
            self._update_overall()
            self.progress.update(
                self.overall, force_at=None, status_text=_badge(execution.status)
            )
            self.progress.stop_task(self.overall)
        if self.live:
            self.progress.stop()

    def _update_overall(self) -> None:
        if self.overall is None:
            return
        steps = list(self._steps.values())
        work = sum(display.fraction(step) for step in steps)
        if any(step["status"] != "pending" for step in steps):
            self.progress.start_task(self.overall)
        self.progress.update(self.overall, completed=round(SCALE * work))

    def say(self, text: str, style: str = "") -> None:
        """A line above the bars (the bars stay at the bottom). Wrapped by
        rich itself, so the live display knows how many lines it took."""
        self.console.print(text, style=style or None, markup=False)


def _badge(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'bold')}]{status:<12}[/]"
