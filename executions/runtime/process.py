"""Execution processes: each execution's engine and step code in an OS
process (and process group) of its own, forked from a warm forkserver; here
the supervisor's side of it (the process's own side is `child`).

The forkserver imports Django and every app's commands once
(`preload`), so starting an execution costs a fork, not an interpreter.
Supervisor and execution process talk over a socket pair, one JSON message
a line:

- supervisor → process: `{"t": "interrupt", "force": bool}`, and
  `{"t": "watched", "watched": bool}` as watchers come and go (nobody
  watching: its steps are sampled at the database's pace, not the
  watchers');
- process → supervisor: `{"t": "step", "step": {...}}` for progress,
  `{"t": "log", "lines": [{"step", "at", "level", "text"}], "dropped": n}`
  for the steps' log lines (a batch per progress interval; `dropped` lines
  were over the rate, or waited on a supervisor too slow to read them),
  `{"t": "ack", "force": bool}` once its signal is set (or escalated), and
  `{"t": "report", "outcome": {...}, "results": {...}}` at the end.

The execution process never writes the row: the supervisor does, and only
once the process and its process group are gone, so no step code runs after
the row says the run ended.

The supervisor writes to the process on a socket of its own (a dup of its
end, `_Lines`), not through the transport it reads with: a write the process
can no longer take (it has shut its end, or exited) fails, and on a
transport that failure would stop the reading too, losing what the process
sent last (its report) while still unread in the kernel. An interrupt
relayed as the process ends, which it heard for itself over Redis, must not
turn a clean stop into a lost report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from .child import LINE_LIMIT, encode, main
from .spec import RunSpec

logger = logging.getLogger(__name__)

PRELOAD = ["executions.runtime.preload"]

_context: multiprocessing.context.BaseContext | None = None
_context_lock = threading.Lock()


def context() -> multiprocessing.context.BaseContext:
    """The forkserver context, its server preloading Django and the apps."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def warm_up() -> None:
    """Start the forkserver now (it takes Django's start-up once), so the
    first execution does not wait for it. Blocking: call from a thread."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


class ExecutionProcess:
    """The supervisor's handle on one execution process."""

    def __init__(
        self,
        spec: RunSpec,
        on_message: Callable[[dict[str, Any]], None],
    ) -> None:
        self.spec = spec
        self.on_message = on_message
        self.process: multiprocessing.process.BaseProcess | None = None
        self._writer: _Lines | None = None
        #: The end it reads (kept: a StreamWriter let go closes its transport).
        self._reading_end: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task | None = None
        self._exited: asyncio.Future | None = None
        #: An interrupt asked for while the process was still starting, and
        #: whether it is watched, if that changed meanwhile.
        self._pending: bool | None = None
        self._watched: bool | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        self.process = context().Process(
            target=main,
            args=(self.spec.as_dict(), theirs),
            name=f"execution-{self.spec.execution_id}",
            daemon=True,
        )
        try:
            # The first start may wait for the forkserver: not on the loop.
            await loop.run_in_executor(None, self.process.start)
        finally:
            theirs.close()
        self._writer = _Lines(ours.dup())
        reader, self._reading_end = await asyncio.open_unix_connection(
            sock=ours, limit=LINE_LIMIT
        )
        if self._pending is not None:
            self.interrupt(self._pending)
        if self._watched is not None:
            self.watch(self._watched)
        self._exited = loop.create_future()
        loop.add_reader(self.process.sentinel, self._on_exit)
        self._reading = asyncio.ensure_future(self._read(reader))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self.process.sentinel)
        self.process.join(0)
        if not self._exited.done():
            self._exited.set_result(self.process.exitcode)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Each message the process sent, until its end closes. A process
        that exits with a line of ours unread (a relay as it ended) leaves
        a reset where the end would be, after everything it sent: the same
        end."""
        with contextlib.suppress(ConnectionResetError):
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    logger.warning("bad message from %s", self.spec.execution_id)
                    continue
                self.on_message(message)

    def interrupt(self, force: bool) -> None:
        if self._writer is None:
            self._pending = force  # sent once connected
        else:
            self._writer.write(encode({"t": "interrupt", "force": force}))

    def watch(self, watched: bool) -> None:
        if self._writer is None:
            self._watched = watched  # sent once connected
        else:
            self._writer.write(encode({"t": "watched", "watched": watched}))

    async def wait(self) -> None:
        """Until the conversation is over: every message the process sent was
        read, and it shut its end of the socket (just before `os._exit`, see
        `main`) or exited."""
        await asyncio.wait(
            [self._reading, self._exited], return_when=asyncio.FIRST_COMPLETED
        )
        if self._exited.done():
            await asyncio.wait([self._reading], timeout=5)

    async def exit_code(self) -> int:
        """Its exit code once it has exited (negative: the signal that killed
        it)."""
        return await asyncio.shield(self._exited)

    def kill_group(self, number: int = signal.SIGKILL) -> None:
        """Signal the execution's process group: the process, its threads'
        children, and every subprocess a step started."""
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, number)
        except ProcessLookupError:
            # Not (or no longer) a group: the process itself, if alive.
            if self.process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, number)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reading_end is not None:
            self._reading_end.close()
        if self._reading is not None:
            self._reading.cancel()


class _Lines:
    """The supervisor's lines to the process, on a socket of its own
    (non-blocking, a dup of the end it reads): what the kernel does not take
    at once waits for the socket to be writable; once a write fails (the
    process has shut its end or exited) the rest is dropped: there is nobody
    left to tell."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._unsent = bytearray()
        self._loop = asyncio.get_running_loop()
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        waiting = bool(self._unsent)  # then it queues behind what waits
        self._unsent += data
        if not waiting and self._send():
            self._loop.add_writer(self._sock.fileno(), self._flush)

    def _send(self) -> bool:
        """Send what it can; True if some is left for later."""
        try:
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self.close()
            return False
        del self._unsent[:sent]
        return bool(self._unsent)

    def _flush(self) -> None:
        if not self._send() and not self.closed:
            self._loop.remove_writer(self._sock.fileno())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._unsent.clear()
            self._loop.remove_writer(self._sock.fileno())
            self._sock.close()


def describe_exit(code: int) -> str:
    """Why an execution process ended without reporting, for the row."""
    if code < 0:
        name = signal.Signals(-code).name
        text = f"the execution process was killed by {name}"
        if -code == signal.SIGSEGV:
            text += " (a segmentation fault)"
        elif -code == signal.SIGKILL:
            text += " (out of memory, or killed from outside)"
        return text
    return f"the execution process exited with code {code} before the run ended"
