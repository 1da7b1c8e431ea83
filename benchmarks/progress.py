"""Scenario 4: what progress costs.

A step reports 1,000,000 increments with `ctx.progress.advance()`:

- cost per call: the step's own loop, timed inside it, over the million
  calls, while a real run samples it every EXECUTIONS_PROGRESS_INTERVAL;
  and then a million `ctx.checkpoint()` calls (no interrupt asked for: the
  cost a step pays for checking often);
  floors: the same loop doing nothing, and calling a no-op method (any
  Python call costs that much);
- events reaching the channel layer: a real `Supervisor` (Django, in-memory
  layer, SQLite) runs the command in this process, as it runs a terminal's
  own run (`run_here`: the engine's `run_spec` feeding the supervisor's
  coalescing outbox; an execution process feeds it the same events over its
  socket pair), and every `group_send` of a step event is counted (the
  layer is wrapped in this process), per second of the step's run, for a
  step that reports as fast as it can and for one that spreads the million
  over ~3 s; and the final value (1,000,000, `succeeded`) must be the last
  event sent, and the one in the database.
"""

from __future__ import annotations

import time

from benchmarks.stack import Context
from benchmarks.support import summary

INCREMENTS = 1_000_000
CHUNK = 1000


class _Counter:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = 0

    def noop(self, n: int = 1) -> None:
        pass


def _per_call_ns(loop) -> float:
    started = time.perf_counter()
    loop()
    return (time.perf_counter() - started) / INCREMENTS * 1e9


def floors() -> dict[str, list[float]]:
    from executions.engine.progress import ProgressTracker

    counter = _Counter()
    tracker = ProgressTracker(total=INCREMENTS)

    def empty() -> None:
        for _ in range(INCREMENTS):
            pass

    def noop() -> None:
        for _ in range(INCREMENTS):
            counter.noop()

    def advance() -> None:
        for _ in range(INCREMENTS):
            tracker.advance()

    return {
        "empty loop (floor)": [_per_call_ns(empty) for _ in range(5)],
        "no-op method call (floor)": [_per_call_ns(noop) for _ in range(5)],
        "advance(), no run around it": [_per_call_ns(advance) for _ in range(5)],
    }


# Each step's result (the scheduler keeps it by step id) is its own timing.


def _tight(ctx) -> dict:
    started = time.perf_counter()
    for _ in range(INCREMENTS):
        ctx.progress.advance()
    advanced = time.perf_counter()
    for _ in range(INCREMENTS):
        ctx.checkpoint()
    return {
        "ns_per_call": (advanced - started) / INCREMENTS * 1e9,
        "checkpoint_ns": (time.perf_counter() - advanced) / INCREMENTS * 1e9,
    }


async def _tight_async(ctx) -> dict:
    return _tight(ctx)


def _paced(ctx) -> dict:
    pause = ctx.params["seconds"] / (INCREMENTS / CHUNK)
    started = time.perf_counter()
    spent = 0.0
    for _ in range(INCREMENTS // CHUNK):
        begin = time.perf_counter()
        for _ in range(CHUNK):
            ctx.progress.advance()
        spent += time.perf_counter() - begin
        time.sleep(pause)
    return {
        "ns_per_call": spent / INCREMENTS * 1e9,
        "elapsed": time.perf_counter() - started,
    }


def _register():
    from executions.engine import Cmd, Param, Step, registry

    steps = {
        "bench.progress.tight": Step("count", _tight, "Count", total=INCREMENTS),
        "bench.progress.tight-async": Step(
            "count", _tight_async, "Count", total=INCREMENTS
        ),
        "bench.progress.paced": Step("count", _paced, "Count", total=INCREMENTS),
    }
    for name, step in steps.items():
        try:
            registry.get(name)
        except Exception:
            registry.register(
                Cmd(
                    name=name,
                    title=name,
                    steps=[step],
                    params=(Param("seconds", "float", 3.0),),
                )
            )


async def one_run(cmd: str, seconds: float) -> dict:
    """Run `cmd` in this process under a real Supervisor; count the step
    events handed to the channel layer."""
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from executions import services
    from executions.models import Execution, Source
    from executions.runtime.supervisor import Supervisor

    start = sync_to_async(services.start_execution, thread_sensitive=True)
    execution = (
        await start(cmd, {"seconds": seconds}, source=Source.CLI, dispatch=False)
    ).execution
    layer = get_channel_layer()
    sent: list[tuple[float, dict]] = []
    original = layer.group_send

    async def counting(group: str, message: dict) -> None:
        if message.get("type") == "execution.progress":
            now = time.monotonic()
            sent.extend((now, step) for step in message["steps"])
        await original(group, message)

    layer.group_send = counting
    supervisor = Supervisor(reaps=False)
    try:
        finished = await supervisor.run_here(execution.id)
    finally:
        layer.group_send = original
        await supervisor.close()
    row = await sync_to_async(Execution.objects.get)(pk=execution.id)
    first, last = sent[0], sent[-1]
    duration = max(last[0] - first[0], 1e-9)
    # Between the step's first and last event: the sampler's steady rate.
    middle = [step for _, step in sent[1:-1]]
    return {
        "status": finished.status,
        "events": len(sent),
        "duration": duration,
        "per_second": len(sent) / duration,
        "steady_per_second": len(middle) / duration,
        "final_sent": last[1]["progress"]["done"],
        "final_status": last[1]["status"],
        "final_db": row.steps[0]["progress"]["done"],
    }


async def run(context: Context) -> None:
    _register()
    from executions.engine import Scheduler, registry

    rows = {name: values for name, values in floors().items()}
    # advance() inside a scheduled run: the step's own timing of its loop.
    for name, label in (
        ("bench.progress.tight", "advance() in a sync step, run sampling it"),
        ("bench.progress.tight-async", "advance() in an async step, run sampling it"),
    ):
        samples, checkpoints = [], []
        for _ in range(5):
            scheduler = Scheduler(registry.get(name).build({"seconds": 0}), {})
            await scheduler.run()
            samples.append(scheduler.results["count"]["ns_per_call"])
            checkpoints.append(scheduler.results["count"]["checkpoint_ns"])
        rows[label] = samples
        rows[label.replace("advance()", "checkpoint()")] = checkpoints

    runs = {}
    seconds = 1.0 if context.quick else 3.0
    for name, label in (
        ("bench.progress.tight", "as fast as it can (sync step)"),
        ("bench.progress.paced", f"spread over ~{seconds:.0f} s (sync step)"),
    ):
        runs[label] = await one_run(name, seconds)
    context.results["progress"] = {
        "cost_ns": {name: summary(values) for name, values in rows.items()},
        "runs": runs,
        "interval": _interval(),
    }


def _interval() -> float:
    from executions.conf import conf

    return conf.PROGRESS_INTERVAL


def markdown(section: dict) -> str:
    lines = [
        "| loop of 1,000,000 | ns per call, min | p50 | max | p50 − empty loop |",
        "|---|---|---|---|---|",
    ]
    empty = section["cost_ns"]["empty loop (floor)"]["p50"]
    for name, stat in section["cost_ns"].items():
        lines.append(
            f"| {name} | {stat['min']:.0f} | {stat['p50']:.0f} | {stat['max']:.0f} "
            f"| {stat['p50'] - empty:.0f} |"
        )
    lines += [
        "",
        "| step reporting 1,000,000 increments | step events to the layer | over "
        "| events/s (all) | events/s (between first and last) | last event sent "
        "| in the database | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in section["runs"].items():
        lines.append(
            f"| {name} | {run['events']} | {run['duration']:.2f} s "
            f"| {run['per_second']:.1f} | {run['steady_per_second']:.1f} "
            f"| {run['final_sent']:,} ({run['final_status']}) | {run['final_db']:,} "
            f"| {run['status']} |"
        )
    return "\n".join(lines)
