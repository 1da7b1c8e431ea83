"""The supervisor's side of an execution process (executions/runtime/
process.py), with a real process forked from the forkserver."""

from __future__ import annotations

import asyncio
import socket
import uuid

from executions.runtime.process import ExecutionProcess, _Lines
from executions.runtime.spec import RunSpec

#: Generous: the first run also starts the forkserver.
HANG = 60


def quick_run() -> RunSpec:
    params = {"count": 1, "seconds": 0, "ticks": 1, "fail_at": None}
    return RunSpec(
        execution_id=str(uuid.uuid4()),
        cmd="demo.steps",
        params={**params, "cooperative": True},
        strategy="finish-current",
    )


async def ended(process: ExecutionProcess) -> None:
    """Until the conversation is over (at most HANG); then the process and
    what it started are gone, as the supervisor leaves them."""
    try:
        await asyncio.wait_for(process.wait(), HANG)
    finally:
        process.kill_group()
        process.close()


async def test_a_line_to_a_process_gone_loses_nothing_it_sent():
    """The process runs to its end and exits while the supervisor's loop is
    busy, its report unread in the kernel; then an interrupt is relayed to
    it (one it heard for itself over Redis): the write fails, and the report
    is still read, not lost with it."""
    messages: list[dict] = []
    process = ExecutionProcess(quick_run(), messages.append)
    await process.start()
    process.process.join(HANG)  # holds the loop: nothing is read meanwhile
    assert process.process.exitcode == 0

    process.interrupt(False)
    process.watch(True)
    await ended(process)

    kinds = [message["t"] for message in messages]
    assert kinds[-1] == "report", kinds
    assert messages[-1]["outcome"]["kind"] == "complete"


async def test_an_interrupt_relayed_to_a_running_process_stops_it():
    """An interrupt written to a running process: it is heard there (its
    acknowledgement), and the run reports it."""
    spec = quick_run()
    spec.params.update(seconds=60, ticks=6000)
    messages: list[dict] = []
    process = ExecutionProcess(spec, messages.append)
    await process.start()
    process.watch(True)
    process.interrupt(False)
    await ended(process)

    kinds = [message["t"] for message in messages]
    assert "ack" in kinds
    assert messages[-1]["t"] == "report"
    assert messages[-1]["outcome"]["kind"] == "interrupted"


async def test_what_the_kernel_does_not_take_at_once_follows_in_order():
    """More than the socket holds, to a peer not reading yet: the rest waits
    for the socket, and everything arrives, in order."""
    ours, theirs = socket.socketpair()
    lines = _Lines(ours)
    sent = [f"line {number}\n".encode() * 100 for number in range(2000)]
    for data in sent:
        lines.write(data)
    assert lines._unsent  # the kernel did not take it all

    theirs.setblocking(False)
    received = bytearray()

    async def read_all() -> None:
        while len(received) < sum(map(len, sent)):
            try:
                received.extend(theirs.recv(1 << 16))
            except BlockingIOError:
                await asyncio.sleep(0.001)

    await asyncio.wait_for(read_all(), HANG)
    assert bytes(received) == b"".join(sent)
    lines.close()
    theirs.close()


async def test_once_a_write_fails_the_rest_is_dropped():
    ours, theirs = socket.socketpair()
    lines = _Lines(ours)
    theirs.close()

    lines.write(b"interrupt\n")  # EPIPE: the process is gone
    lines.write(b"watched\n")

    assert lines.closed
    assert lines._unsent == bytearray()


async def test_a_reset_after_the_last_line_ends_the_reading_as_an_end_would():
    """A process that exits with a line of ours unread leaves a reset, not
    an end, after what it sent: every line is handed on, and the reading
    ends without an error."""
    messages: list[dict] = []
    process = ExecutionProcess(quick_run(), messages.append)
    reader = asyncio.StreamReader()
    reading = asyncio.ensure_future(process._read(reader))
    reader.feed_data(b'{"t": "ack", "force": false}\n{"t": "report"}\n')
    await asyncio.sleep(0)  # the lines are read as they come
    reader.set_exception(ConnectionResetError())

    await reading

    assert [message["t"] for message in messages] == ["ack", "report"]
