"""The terminal's words for a run: what Ctrl-C does, the final report, and
an output that survives its reader going away. The live bars are in
`bars`: rich, which draws them, is imported only by a run that shows them."""

from __future__ import annotations

import io
import os
from typing import TextIO

from . import display, services
from .models import Execution

# What Ctrl-C does, each short enough for one line of an 80-column terminal:
# a wrapped line above live bars leaves a stale copy of a bar behind.
GRACEFUL = "Interrupting: no new step starts. Press Ctrl-C again to force."
IGNORED = "Interrupt recorded; strategy ignore runs on. Press Ctrl-C again to force."
FORCED = "Forcing: steps in flight are cancelled now."
ENDED = "The run has already ended: nothing to interrupt."

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


def interrupt_notice(*, force: bool, ignored: bool, ended: bool) -> str:
    """What the terminal says when Ctrl-C is pressed."""
    if ended:
        return ENDED
    if force:
        return FORCED
    return IGNORED if ignored else GRACEFUL


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
