"""The terminal's view of a run: a live bar per step, the steps' log lines
above the bars, and the final report."""

from __future__ import annotations

import io
import math
import os
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

from . import display, services
from .models import Execution
from .runtime.run import RunObserver

# What Ctrl-C does, each short enough for one line of an 80-column terminal:
# a wrapped line above live bars leaves a stale copy of a bar behind.
GRACEFUL = "Interrupting: no new step starts. Press Ctrl-C again to force."
IGNORED = "Interrupt recorded; strategy ignore runs on. Press Ctrl-C again to force."
FORCED = "Forcing: steps in flight are cancelled now."
ENDED = "The run has already ended: nothing to interrupt."
#: The overall bar counts work in thousandths of a step.
SCALE = 1000

STATUS_STYLE = {
    "queued": "dim",
    "pending": "dim",
    "running": "cyan",
    "stalled": "yellow",
    "interrupting": "yellow",
    "succeeded": "green",
    "failed": "red",
    "interrupted": "magenta",
    "skipped": "dim",
    "lost": "red",
}
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


def interrupt_notice(*, force: bool, ignored: bool, ended: bool) -> str:
    """What the terminal says when Ctrl-C is pressed."""
    if ended:
        return ENDED
    if force:
        return FORCED
    return IGNORED if ignored else GRACEFUL


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


#: A longer list of step IDs in the report is cut to its first few.
REPORT_LIST = 20


def local_time(iso: str | None) -> str:
    """The pages' format, in this machine's time zone."""
    moment = display.parse(iso)
    return moment.astimezone().strftime(display.FORMAT) if moment else ""


def report(execution: Execution) -> list[tuple[str, str]]:
    """The final report as (text, style) lines: what was and was not done,
    and every interrupt request, in the pages' words."""
    outcome = execution.outcome or {}
    titles = {step["id"]: step["title"] for step in execution.steps}
    statuses = {step["id"]: step["status"] for step in execution.steps}
    summary = display.overall(execution.steps)
    lines = [
        (
            f"Execution {execution.id} {execution.status}: {summary['text']}.",
            STATUS_STYLE.get(execution.status, "bold"),
        )
    ]
    processed = outcome.get("steps_processed", [])
    not_processed = outcome.get("steps_not_processed", [])
    lines.append((f"Processed ({len(processed)}):", "bold"))
    lines += _listed(
        [f"  ✓ {step_id}  {titles.get(step_id, '')}" for step_id in processed]
    )
    lines.append((f"Not processed ({len(not_processed)}):", "bold"))
    lines += _listed(
        [
            f"  ✗ {step_id}  {titles.get(step_id, '')} ({statuses.get(step_id)})"
            for step_id in not_processed
        ]
    )
    for step_id, error in outcome.get("errors", {}).items():
        lines.append((f"Error in {step_id}: {error}", "red"))
    request = execution.interrupt_snapshot()
    for each in request["requests"] if request else []:
        kind = "Forced interrupt" if each["force"] else "Interrupt"
        line = f"{kind} requested by {each['by'] or 'someone'} from "
        line += f"{display.source_label(each['source'])} at {local_time(each['at'])}"
        if each["reason"]:
            line += f": {each['reason']}"
        lines.append((line, ""))
    if request and request["delivered_at"]:
        delivered = local_time(request["delivered_at"])
        lines.append((f"Delivered to the run at {delivered}.", "dim"))
    return lines


def _listed(items: list[str]) -> list[tuple[str, str]]:
    shown = [(item, "") for item in items[:REPORT_LIST]]
    if len(items) > REPORT_LIST:
        shown.append((f"  … and {len(items) - REPORT_LIST} more", "dim"))
    return shown


class ClosedPipeSafe(io.TextIOBase):
    """A stream that survives its reader going away (`execute ... | head -1`):
    once the pipe is closed, output is dropped and the run goes on to its end
    and its exit code, with no BrokenPipe traceback."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                self._stream.write(text)
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.closed_by_reader = True
        # Python flushes stdout again at exit: point it at nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def isatty(self) -> bool:
        return not self.closed_by_reader and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8")


def describe_cmds() -> str:
    """`execute --list`: each command, its title, and its params with their
    types, defaults, bounds or choices, and help."""
    return "\n\n".join(cmd.usage() for cmd in services.commands())
