"""Probes for the processes the benchmarks start, and only for them.

`install()` is called by the benchmark harnesses (`benchmarks/asgi.py` for
daphne, `benchmarks/harness.py` for `runworker` and `execute`) after Django is
set up. It leaves the product's code as it is and watches it from outside:

- each `Runner`'s `InterruptSignal` gets a listener (`add_listener`, called
  synchronously when the signal changes) that reports `signal` with the time;
- the runner's first join of its control group is reported as `joined`, so a
  benchmark interrupts only a runner that can hear the push;
- a finished `Runner.run()` is reported as `done`;
- with PEACE_BENCH_SENDS=1, each step event the runner hands to the channel
  layer is reported as `sent`, with a key the websocket watchers can match.

Reports are JSON datagrams to PEACE_BENCH_COLLECTOR (host:port), each with
`time.time()` taken at the moment of the event: the clocks of processes on one
machine agree, so latencies across processes are differences of these.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid

COLLECTOR = "PEACE_BENCH_COLLECTOR"
SENDS = "PEACE_BENCH_SENDS"
CONTROL_PREFIX = "execution-control."
WATCH_PREFIX = "execution."


def step_key(step: dict) -> str:
    """Identifies one step event: the same on the sending and receiving side."""
    return "|".join(
        (step["id"], step["status"], str(step["progress"]["done"]), step["message"])
    )


def install() -> None:
    target = os.environ.get(COLLECTOR)
    if not target:
        return
    host, _, port = target.rpartition(":")
    address = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def report(kind: str, key: str, **extra) -> None:
        message = {"k": kind, "id": key, "t": time.time(), **extra}
        with contextlib.suppress(OSError):
            sock.sendto(json.dumps(message).encode(), address)

    _probe_runner(report)
    _probe_layer(report, sends=os.environ.get(SENDS) == "1")


def _probe_runner(report) -> None:
    from executions.runner import Runner

    init, run = Runner.__init__, Runner.run

    def probed_init(self, execution_id, **options) -> None:
        init(self, execution_id, **options)
        key = uuid.UUID(str(execution_id)).hex
        signal = self.signal
        signal.add_listener(lambda: report("signal", key, force=signal.force))

    async def probed_run(self):
        try:
            return await run(self)
        finally:
            report("done", uuid.UUID(str(self.execution_id)).hex)

    Runner.__init__ = probed_init
    Runner.run = probed_run


def _probe_layer(report, *, sends: bool) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    group_add, group_send = layer.group_add, layer.group_send

    async def probed_group_add(group: str, channel: str) -> None:
        await group_add(group, channel)
        if group.startswith(CONTROL_PREFIX):
            report("joined", group.removeprefix(CONTROL_PREFIX))

    async def probed_group_send(group: str, message: dict) -> None:
        if message.get("type") == "execution.step":
            report(
                "sent",
                group.removeprefix(WATCH_PREFIX),
                event=step_key(message["step"]),
            )
        await group_send(group, message)

    layer.group_add = probed_group_add
    if sends:
        layer.group_send = probed_group_send
