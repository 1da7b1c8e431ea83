"""The execution process's side: its entry point (`main`, forked from the
forkserver in `process`) and its end of the socket pair to the supervisor,
in the wire format `process` describes.

It runs the engine under its own interrupt signal, sends the steps'
progress, log lines, its acknowledgement and its report up the socket, and
sets the signal as each interrupt line arrives, or as the interrupt reaches
its own place in the control group (`control`) where the layer spans
processes. It never writes the row. A
supervisor that goes away (its end closes) takes the process group with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from ..engine import InterruptSignal
from ..engine.progress import Pace
from . import control, groups
from .spec import RunSpec, run_spec

logger = logging.getLogger(__name__)

#: One message may carry a step's results: allow large lines.
LINE_LIMIT = 64 * 1024 * 1024
#: Log batches are dropped (and counted) while this much waits unread for
#: the supervisor: a step must never wait on its supervisor to log.
LOG_BACKLOG = 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def main(spec: dict[str, Any], sock: socket.socket) -> None:
    """The execution process's entry point (in the forked child)."""
    os.setpgid(0, 0)  # its own process group: force stops what it started
    if spec["nice"]:
        # Step code that hogs a core yields it to the server's pages.
        os.nice(spec["nice"])
    # The supervisor's SIGINT (a terminal's Ctrl-C on daphne) is not ours.
    # A handler that does nothing, not SIG_IGN: an ignored signal stays
    # ignored across exec, and ctx.run's `sigint` policy needs its children
    # to hear it.
    signal.signal(signal.SIGINT, _ignore)
    code = 0
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(RunSpec(**spec), sock))
    except BaseException:
        logger.exception("execution process for %s failed", spec["execution_id"])
        code = 70
    # No teardown (asyncio.run's cancels tasks and joins the executor's
    # threads): the supervisor writes the row once this process is gone, so
    # every millisecond here is on the way to "stopped". Abandoned step
    # threads end with the process, not after it.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # The kernel takes milliseconds to tear a process down before it closes
    # its files: end the conversation first, so the supervisor need not wait
    # for that (it kills the group on seeing the end; see `wait`).
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    os._exit(code)


def _ignore(number, frame) -> None:
    """SIGINT in an execution process: not ours (see `main`)."""


async def _serve(spec: RunSpec, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    interrupt = InterruptSignal()
    pace = Pace(spec.progress_interval)

    def watched(yes: bool) -> None:
        pace.set(spec.progress_interval if yes else spec.unwatched_interval)

    control = _Control(interrupt, watched)
    transport, _ = await loop.create_unix_connection(lambda: control, sock=sock)
    writer = asyncio.StreamWriter(transport, control, None, loop)

    def send(message: dict[str, Any]) -> None:
        writer.write(encode(message))

    def on_signal() -> None:
        ack = {"t": "ack", "force": interrupt.force}
        loop.call_soon_threadsafe(send, ack)

    unsent = 0

    def on_log(lines: list[dict[str, Any]], dropped: int) -> None:
        nonlocal unsent
        if writer.transport.get_write_buffer_size() > LOG_BACKLOG:
            unsent += len(lines) + dropped
            return
        send({"t": "log", "lines": lines, "dropped": dropped + unsent})
        unsent = 0

    interrupt.add_listener(on_signal)
    hearing = _hear_control_group(spec.execution_id, interrupt)
    try:
        report = await run_spec(
            spec,
            interrupt,
            lambda state: send({"t": "step", "step": state.to_dict()}),
            on_log,
            whole_process=True,
            pace=pace,
        )
    finally:
        if hearing is not None:  # the run is over: nothing left to interrupt
            hearing.cancel()
    if unsent:
        send({"t": "log", "lines": [], "dropped": unsent})
    send(
        {"t": "report", "outcome": report.outcome.to_dict(), "results": report.results}
    )
    await writer.drain()


def _hear_control_group(
    execution_id: str, interrupt: InterruptSignal
) -> asyncio.Task | None:
    """Join the execution's control group too, where the channel layer
    reaches this process (`control`): an interrupt then sets the signal here
    as soon as it is published. The listening task, held until the run ends
    (the loop keeps only a weak reference to a task); the membership itself
    ends with the process."""
    layer = get_channel_layer()
    if not control.spans_processes(layer):
        return None

    def on_message(message: dict) -> None:
        if message.get("type") == groups.INTERRUPT:
            interrupt.request(force=bool(message.get("force")))

    group = groups.control_group(execution_id)
    return asyncio.ensure_future(control.listen(layer, group, on_message, leave=False))


class _Control(asyncio.StreamReaderProtocol):
    """The supervisor's end of the socket, as this process hears it: each
    interrupt sets the signal in the callback that reads it, with no reader
    task to wake on the way (the hop an interrupt waits for); whether anyone
    watches the run sets the pace its steps are sampled at. Writes go
    through a StreamWriter on it, with the protocol's flow control."""

    def __init__(
        self, interrupt: InterruptSignal, watched: Callable[[bool], None]
    ) -> None:
        # The StreamReader is the base class's; nothing is ever fed to it.
        super().__init__(asyncio.StreamReader(limit=LINE_LIMIT))
        self._interrupt = interrupt
        self._watched = watched
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            message = json.loads(line)
            kind = message.get("t")
            if kind == "interrupt":
                self._interrupt.request(force=bool(message.get("force")))
            elif kind == "watched":
                self._watched(bool(message.get("watched")))

    def eof_received(self) -> bool:
        _supervisor_gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # A supervisor killed with our messages unread in its socket (SIGKILL
        # mid-run) reads as a reset, not as EOF: gone all the same.
        super().connection_lost(exc)
        _supervisor_gone()


def _supervisor_gone() -> None:
    """Nobody would record what happens next: stop at once, with everything
    this run started."""
    os.killpg(0, signal.SIGKILL)
