"""Step logs: what a step says while it runs, kept per step.

Three sources feed a step's log: Python `logging` records, what it writes to
`sys.stdout` and `sys.stderr`, and the output lines of the subprocesses it
starts with `ctx.run`. Lines are routed by a context variable: the scheduler
sets it in each async step's task and in each sync step's thread, so a line
knows its step without the step saying so. A line from the run but outside
any step goes to the run-level log (step `None`).

A step may write a million lines; the log must cost the run, the server and
the browser nothing noticeable. So the `LogSink` only appends under a lock
(never blocks on anyone), caps the rate at the source with a token bucket,
clips long lines, and counts what it dropped; the scheduler drains it at the
progress interval into one batch for its `on_log` listener.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

from .progress import _iso

#: The levels a line may have: `logging`'s, and where raw output came from.
LEVELS = ("debug", "info", "warning", "error", "critical", "stdout", "stderr")
#: Lines a second a run may log, sustained; more are dropped and counted.
RATE = 1000.0
#: Lines a run may log at once, above the rate.
BURST = 2000
#: A line longer than this is clipped (a traceback keeps its last TRACEBACK_CHARS).
LINE_CHARS = 4000
TRACEBACK_CHARS = 16000
CLIPPED = " …[clipped]"

LogListener = Callable[[list[dict[str, Any]], int], None]


class LogSink:
    """One run's log lines on their way out: thread-safe, bounded, cheap.

    `write` takes whole lines, `feed` takes stream output (partial lines
    wait for their newline, per step and level); `drain` hands over what
    came since the last drain and how many lines were dropped meanwhile."""

    def __init__(
        self,
        *,
        rate: float = RATE,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._lines: list[dict[str, Any]] = []
        self._dropped = 0
        self._partial: dict[tuple[str | None, str], str] = {}
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def admit(self) -> bool:
        """Take the rate cap's token for one line, or count the line dropped:
        a source asks before it makes the line, so a flood past the cap costs
        no formatting."""
        with self._lock:
            if self._take():
                return True
            self._dropped += 1
            return False

    def write(
        self,
        step: str | None,
        level: str,
        text: str,
        *,
        always: bool = False,
        admitted: bool = False,
    ) -> None:
        """Add one line. `always` skips the rate cap: a step's traceback is
        what a reader most needs, and there is one per failed step.
        `admitted`: the line's token was taken already (`admit`)."""
        limit = TRACEBACK_CHARS if always else LINE_CHARS
        if len(text) > limit:
            text = CLIPPED.strip() + text[-limit:] if always else text[:limit] + CLIPPED
        with self._lock:
            if always or admitted or self._take():
                self._lines.append(
                    {"step": step, "at": time.time(), "level": level, "text": text}
                )
            else:
                self._dropped += 1

    def feed(self, step: str | None, level: str, text: str) -> None:
        """Add stream output: each complete line is written; the rest waits."""
        key = (step, level)
        with self._lock:
            pending = self._partial.pop(key, "") + text
            *lines, rest = pending.split("\n")
            if len(rest) > LINE_CHARS:
                # A stream that never ends its line still gets logged.
                lines.append(rest)
                rest = ""
            if rest:
                self._partial[key] = rest
        for line in lines:
            self.write(step, level, line.rstrip("\r"))

    def end(self, step: str | None) -> None:
        """The step is over: what it wrote without a final newline is a line."""
        with self._lock:
            rests = [
                (key, self._partial.pop(key))
                for key in list(self._partial)
                if key[0] == step
            ]
        for (_, level), rest in rests:
            self.write(step, level, rest)

    def drain(self) -> tuple[list[dict[str, Any]], int]:
        """The lines since the last drain (`at` as ISO 8601), and how many
        were dropped meanwhile."""
        with self._lock:
            lines, self._lines = self._lines, []
            dropped, self._dropped = self._dropped, 0
        for line in lines:
            line["at"] = _iso(line["at"])
        return lines, dropped

    def _take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class StepLog:
    """`ctx.log`: write to the step's log directly, whatever the project's
    logging configuration lets through. `ctx.log.info("copied %s", name)`."""

    def __init__(self, sink: LogSink | None, step: str | None) -> None:
        self._sink = sink
        self._step = step

    def _write(self, level: str, message: str, args: tuple) -> None:
        if self._sink is not None and self._sink.admit():
            text = message % args if args else message
            self._sink.write(self._step, level, text, admitted=True)

    def debug(self, message: str, *args: Any) -> None:
        self._write("debug", message, args)

    def info(self, message: str, *args: Any) -> None:
        self._write("info", message, args)

    def warning(self, message: str, *args: Any) -> None:
        self._write("warning", message, args)

    def error(self, message: str, *args: Any) -> None:
        self._write("error", message, args)


# -- routing: which log a line from this context belongs to ------------------------


@dataclass(frozen=True)
class Route:
    sink: LogSink
    step: str | None


_route: ContextVar[Route | None] = ContextVar("executions_log_route", default=None)
#: Where lines go from a context no run set (threads a step started itself),
#: in a process that is one run's execution process.
_fallback: Route | None = None


def current() -> Route | None:
    """The log a line written here belongs to, if any."""
    return _route.get() or _fallback


def enter(route: Route | None) -> None:
    """Route this task's (or thread's) lines to `route` from now on."""
    if route is not None:
        _route.set(route)


class _Stream(io.TextIOBase):
    """Stands in for `sys.stdout` / `sys.stderr`: a line written inside a run
    goes to its log; anything else goes where it went before."""

    def __init__(self, original: TextIO, level: str) -> None:
        self.original = original
        self.level = level

    def write(self, text: str) -> int:
        route = current()
        if route is None:
            return self.original.write(text)
        route.sink.feed(route.step, self.level, text)
        return len(text)

    def flush(self) -> None:
        if current() is None:
            self.original.flush()

    def isatty(self) -> bool:
        return current() is None and self.original.isatty()

    def fileno(self) -> int:
        # What writes to the descriptor itself (a child process, faulthandler)
        # bypasses the log; `ctx.run` is how a step logs a child's output.
        return self.original.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.original, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:
        return getattr(self.original, "errors", None)


class _Handler(logging.Handler):
    """On the root logger: a record emitted inside a run goes to its log."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        route = current()
        if route is None or not route.sink.admit():
            return  # outside any run, or past its rate cap: not even formatted
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        route.sink.write(route.step, record.levelname.lower(), text, admitted=True)


class _Capture:
    """The process-wide part, installed while at least one run captures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.handler = _Handler()
        self.streams: tuple[_Stream, _Stream] | None = None

    def install(self) -> None:
        with self.lock:
            self.users += 1
            if self.users > 1:
                return
            out, err = _Stream(sys.stdout, "stdout"), _Stream(sys.stderr, "stderr")
            self.streams = (out, err)
            sys.stdout, sys.stderr = out, err
            logging.getLogger().addHandler(self.handler)

    def uninstall(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users > 0:
                return
            logging.getLogger().removeHandler(self.handler)
            out, err = self.streams
            # Whoever replaced a stream after us keeps it.
            if sys.stdout is out:
                sys.stdout = out.original
            if sys.stderr is err:
                sys.stderr = err.original
            self.streams = None


_capture = _Capture()


@contextlib.contextmanager
def capturing(sink: LogSink, *, fallback: bool = False) -> Iterator[Route]:
    """Route this context's lines to `sink` (run level) while it lasts;
    `fallback` also routes lines from contexts no run set (an execution
    process holds one run, so everything it prints is that run's)."""
    global _fallback
    route = Route(sink, None)
    _capture.install()
    token = _route.set(route)
    if fallback:
        _fallback = route
    try:
        yield route
    finally:
        if fallback and _fallback is route:
            _fallback = None
        _route.reset(token)
        _capture.uninstall()
