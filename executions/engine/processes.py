"""`ctx.run`: a subprocess whose output lines go into the step's log.

The child stays in the process group it was started from. In an execution
process that group is the execution's own, so a forced stop that outlives
its grace period (SIGTERM, then SIGKILL to the group) takes the child with
it; the wait below also kills it itself as soon as the run is forced.

On a graceful interrupt the step's `on_interrupt` policy applies: `wait`
lets the child finish (the step may then stop at its next checkpoint), and
`sigint` sends it SIGINT and waits for it to end; a child that then exits
non-zero leaves the step interrupted, not failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from .interrupt import StepInterrupted
from .logs import LogSink

POLICIES = ("wait", "sigint")
#: How many of the child's last stderr (and stdout) lines are kept, for the
#: error of a failed run and for the returned `CompletedProcess`.
TAIL_LINES = 20
#: How often the wait looks at the interrupt state.
POLL = 0.05
#: How long the output readers may take after the child ended: a grandchild
#: that keeps the pipe open must not hold the step.
READERS_GRACE = 1.0


class CommandFailed(Exception):
    """A command started with `ctx.run(check=True)` exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        if returncode < 0:
            how = f"was killed by {signal.Signals(-returncode).name}"
        else:
            how = f"exited with code {returncode}"
        message = f"{shlex.join(self.argv)} {how}"
        if stderr:
            message += f"; its stderr ended with:\n{stderr}"
        super().__init__(message)


def run(
    argv: Sequence[str],
    *,
    step: str,
    sink: LogSink | None,
    should_stop: Callable[[], bool],
    forced: Callable[[], bool],
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    on_interrupt: str = "wait",
) -> subprocess.CompletedProcess:
    """Run `argv` to its end (blocking), its output lines into `step`'s log."""
    if on_interrupt not in POLICIES:
        raise ValueError(
            f"on_interrupt must be {' or '.join(map(repr, POLICIES))}, "
            f"not {on_interrupt!r}"
        )
    argv = [str(arg) for arg in argv]
    child = subprocess.Popen(
        argv,
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    tails = {"stdout": deque(maxlen=TAIL_LINES), "stderr": deque(maxlen=TAIL_LINES)}
    readers = [
        threading.Thread(
            target=_pump,
            args=(pipe, step, level, sink, tails[level]),
            name=f"step-{step}-{level}",
            daemon=True,
        )
        for pipe, level in ((child.stdout, "stdout"), (child.stderr, "stderr"))
    ]
    for reader in readers:
        reader.start()
    interrupted = False
    try:
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=POLL)
                break
            if forced():
                raise StepInterrupted(step)
            if on_interrupt == "sigint" and not interrupted and should_stop():
                child.send_signal(signal.SIGINT)
                interrupted = True
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        for reader in readers:
            reader.join(READERS_GRACE)
    stdout, stderr = ("\n".join(tails[level]) for level in ("stdout", "stderr"))
    if child.returncode != 0 and interrupted:
        raise StepInterrupted(step)
    if child.returncode != 0 and check:
        raise CommandFailed(argv, child.returncode, stderr)
    return subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)


async def run_async(argv: Sequence[str], **options) -> subprocess.CompletedProcess:
    """`run` for an async step: the wait happens in a thread of its own, so
    the event loop (and every other step) goes on meanwhile."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def deliver(setter, value) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        try:
            outcome = (future.set_result, run(argv, **options))
        except BaseException as error:
            outcome = (future.set_exception, error)
        with contextlib.suppress(RuntimeError):  # the loop is gone: so is the run
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=target, name=f"run-{options['step']}", daemon=True).start()
    return await future


def _pump(
    pipe: IO[bytes],
    step: str,
    level: str,
    sink: LogSink | None,
    tail: deque,
) -> None:
    with pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            if sink is not None:
                sink.write(step, level, line)
            else:
                # No log to go to (the engine alone): the process's own output.
                print(line, file=sys.stdout if level == "stdout" else sys.stderr)
