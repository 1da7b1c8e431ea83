"""The terminal's view of a run: a live bar per step, the steps' log lines
above the bars, and the final report."""

from __future__ import annotations

import io
import os
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from . import services
from .models import Execution
from .runtime.run import RunObserver

STATUS_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "stalled": "yellow",
    "succeeded": "green",
    "failed": "red",
    "interrupted": "magenta",
    "skipped": "dim",
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
        if task.fields.get("unit") == "bytes":
            return self._bytes.render(task)
        return self._steps.render(task)


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
            _Amount(),
            TextColumn("{task.fields[message]}", style="dim"),
            TimeElapsedColumn(),
            console=self.console,
            auto_refresh=True,
            refresh_per_second=10,
        )
        self.tasks: dict[str, TaskID] = {}
        self._status: dict[str, str] = {}

    def started(self, execution: Execution) -> None:
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

    def log(self, lines: list[dict]) -> None:
        for line in lines:
            if self.quiet and line["level"] not in QUIET_LEVELS:
                continue
            where = line["step"] or "run"
            self.console.print(
                f"{where} │ {line['text']}",
                style=LEVEL_STYLE.get(line["level"]),
                markup=False,
                soft_wrap=True,
            )

    def finished(self, execution: Execution) -> None:
        if self.live:
            self.progress.stop()

    def say(self, text: str, style: str = "") -> None:
        """A line above the bars (the bars stay at the bottom)."""
        self.console.print(text, style=style or None, markup=False, soft_wrap=True)


def _badge(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status:<11}[/]"


def report(execution: Execution) -> list[tuple[str, str]]:
    """The final report as (text, style) lines: what was and was not done."""
    outcome = execution.outcome or {}
    titles = {step["id"]: step["title"] for step in execution.steps}
    lines = [
        (
            f"Execution {execution.id} {execution.status}.",
            STATUS_STYLE.get(execution.status, "bold"),
        )
    ]
    processed = outcome.get("steps_processed", [])
    not_processed = outcome.get("steps_not_processed", [])
    lines.append((f"Processed ({len(processed)}):", "bold"))
    lines += [
        (f"  ✓ {step_id}  {titles.get(step_id, '')}", "") for step_id in processed
    ]
    lines.append((f"Not processed ({len(not_processed)}):", "bold"))
    statuses = {step["id"]: step["status"] for step in execution.steps}
    lines += [
        (f"  ✗ {step_id}  {titles.get(step_id, '')} ({statuses.get(step_id)})", "")
        for step_id in not_processed
    ]
    for step_id, error in outcome.get("errors", {}).items():
        lines.append((f"Error in {step_id}: {error}", "red"))
    request = execution.interrupt_snapshot()
    if request:
        who = request["by"] or "someone"
        kind = "Forced interrupt" if request["force"] else "Interrupt"
        line = f"{kind} requested by {who} from {request['source']} at "
        line += request["requested_at"]
        if request["reason"]:
            line += f": {request['reason']}"
        lines.append((line, ""))
    return lines


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
    """`execute --list`: each command, its title and its params."""
    lines = []
    for cmd in services.commands():
        lines.append(f"{cmd.name}  {cmd.title}")
        for param in cmd.params:
            default = "" if param.required else f" (default {param.default!r})"
            line = f"    --param {param.name}=<{param.type}>{default}"
            lines.append(line + (f"  {param.help}" if param.help else ""))
    return "\n".join(lines)
