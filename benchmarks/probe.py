"""Probes for the processes the benchmarks start, and only for them.

`install()` is called by the benchmark harnesses (`benchmarks/asgi.py` for
daphne, `benchmarks/harness.py` for `runworker` and `execute`) after Django is
set up, before any execution starts. It leaves the product's code as it is
and watches it from outside:

- the supervisor's first join of a run's control group is reported as
  `joined`, so a benchmark interrupts only a run that can hear the push;
- a door's push of an interrupt (`broadcast.from_sync` to a control group,
  called once the request is on the row) is reported as `push`, so the
  door's way to its push can be told apart from the way on;
- the supervisor's write of an interrupt to an execution process's socket
  pair is reported as `relayed`, so the hop from there to the engine's
  signal can be told apart from the door and the layer;
- the supervisor seeing the execution process gone is reported as
  `exited`, and its final write of the row as `final`;
- a supervised run that is over (its row final, its watchers told) is
  reported as `done`;
- with PEACE_BENCH_SENDS=1, each step event the supervisor hands to the
  channel layer is reported as `sent`, with a key the watchers can match;
- where the engine runs, its `InterruptSignal` gets a listener
  (`add_listener`, called synchronously when the signal changes) that
  reports `signal`; the first step seen running is reported as `running`,
  with the engine's own start time of that step; the end of the engine's run
  is reported as `ran`.

The engine runs in an execution process, forked from the forkserver the
supervisor starts (`executions.runtime.process`): `install()` adds
`benchmarks.forked` to the modules that forkserver preloads, and that module,
imported there, wraps `executions.runtime.child.run_spec` (the name the
child calls). A terminal's own run (`manage.py execute`) calls
`executions.runtime.engines.run_spec` in its own process: that name is
wrapped here.

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
#: An experiment, not a probe: websocket consumers skip their once-a-second
#: session re-check before forwarding (benchmarks/fanout.py, benchmarks/asgi.py).
NO_RECHECK = "PEACE_BENCH_NO_RECHECK"
CONTROL_PREFIX = "execution-control."
INTERRUPT = "execution.interrupt"
WATCH_PREFIX = "execution."
#: Imported by the forkserver, after the product's own preload (Django set up).
FORKED_MODULE = "benchmarks.forked"

_sock: tuple[int, socket.socket] | None = None


def step_key(step: dict) -> str:
    """Identifies one step event: the same on the sending and receiving side."""
    return "|".join(
        (step["id"], step["status"], str(step["progress"]["done"]), step["message"])
    )


def report(kind: str, key: str, **extra) -> None:
    """One datagram to the collector; nothing when no collector is set."""
    global _sock
    target = os.environ.get(COLLECTOR)
    if not target:
        return
    message = {"k": kind, "id": key, "t": time.time(), **extra}
    # One socket per process: a forked child makes its own.
    if _sock is None or _sock[0] != os.getpid():
        _sock = (os.getpid(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    host, _, port = target.rpartition(":")
    with contextlib.suppress(OSError):
        _sock[1].sendto(json.dumps(message).encode(), (host, int(port)))


def install() -> None:
    if not os.environ.get(COLLECTOR):
        return
    from executions.runtime import broadcast, engines, process, store, supervisor

    if FORKED_MODULE not in process.PRELOAD:
        process.PRELOAD.append(FORKED_MODULE)
    # A terminal's own run calls it from the local engine.
    engines.run_spec = probed_run_spec(engines.run_spec)
    _probe_supervisor(supervisor.Supervisor)
    _probe_relay(process.ExecutionProcess)
    _probe_finish(store)
    _probe_push(broadcast)
    _probe_layer(sends=os.environ.get(SENDS) == "1")


def probed_run_spec(run_spec):
    """`run_spec` (the engine's run, wherever it runs) with the probes."""

    async def probed(spec, signal, on_step, *args, **options):
        key = uuid.UUID(str(spec.execution_id)).hex
        signal.add_listener(lambda: report("signal", key, force=signal.force))
        seen = []

        def watched(state) -> None:
            if not seen and str(state.status) == "running":
                seen.append(state.id)
                report("running", key, started=state.started_at, pid=os.getpid())
            on_step(state)

        try:
            return await run_spec(spec, signal, watched, *args, **options)
        finally:
            report("ran", key)

    return probed


def _probe_supervisor(cls) -> None:
    supervise = cls._supervise

    async def probed_supervise(self, run):
        try:
            return await supervise(self, run)
        finally:
            report("done", uuid.UUID(run.id).hex)

    cls._supervise = probed_supervise


def _probe_relay(cls) -> None:
    interrupt, wait = cls.interrupt, cls.wait

    def probed_interrupt(self, force: bool) -> None:
        interrupt(self, force)
        report("relayed", uuid.UUID(str(self.spec.execution_id)).hex, force=force)

    async def probed_wait(self) -> None:
        # The supervisor is done with the process: its last message read and
        # its socket shut on its way out (or it exited).
        await wait(self)
        report("exited", uuid.UUID(str(self.spec.execution_id)).hex)

    cls.interrupt = probed_interrupt
    cls.wait = probed_wait


def _probe_push(module) -> None:
    from_sync = module.from_sync

    def probed_from_sync(method: str, name: str, message: dict, **options) -> None:
        if name.startswith(CONTROL_PREFIX) and message.get("type") == INTERRUPT:
            report("push", name.removeprefix(CONTROL_PREFIX))
        from_sync(method, name, message, **options)

    module.from_sync = probed_from_sync


def _probe_finish(module) -> None:
    finish = module.finish

    async def probed_finish(execution, *args, **kwargs):
        # Its answer (the row as written) is what the run's end is told with:
        # dropping it would make the supervisor read the row again.
        found = await finish(execution, *args, **kwargs)
        report("final", uuid.UUID(str(execution.id)).hex)
        return found

    module.finish = probed_finish


def _probe_layer(*, sends: bool) -> None:
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
        if message.get("type") == "execution.progress":
            for step in message["steps"]:
                report(
                    "sent",
                    group.removeprefix(WATCH_PREFIX),
                    event=step_key(step),
                )
        await group_send(group, message)

    layer.group_add = probed_group_add
    if sends:
        layer.group_send = probed_group_send
