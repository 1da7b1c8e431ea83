"""The scheduler: runs a command's step graph with bounded concurrency and
honours the interrupt signal at its dispatch points (Peace's checkpoints).

Semantics (DESIGN.md, "The engine"):
- a checkpoint before each dispatch; a step that is ready when the run is
  interrupted is not run;
- `finish-current`: steps in flight finish or stop at their own checkpoint;
- `poll-next-n:N`: N more dispatches after the signal is seen, then stop;
- `ignore`: run to the end; force overrides every strategy and ends the run at
  once (async steps cancelled, sync steps abandoned in their thread);
- a step error stops dispatching, in-flight steps finish, and `failed` takes
  precedence over `interrupted`.

A step's return value is its result: it must be JSON (anything else fails
the step), is kept in `results` and is passed to the steps that take it
(`Step.inputs`). On resume, `results=` brings back those of the skipped steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import threading
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .cmd import Step, check_graph
from .context import StepContext
from .interrupt import InterruptSignal, InterruptStrategy, StepInterrupted
from .logs import BURST, RATE, LogListener, LogSink, Route, capturing, enter
from .outcome import Outcome, OutcomeKind
from .params import Params
from .progress import (
    ACTIVE_STEP_STATUSES,
    Pace,
    ProgressTracker,
    StepState,
    StepStatus,
)

logger = logging.getLogger(__name__)

StepListener = Callable[[StepState], None]

ABANDONED = "abandoned: the run was forced to stop while this step ran in its thread"
CANCELLED = "cancelled: the run was forced to stop"
#: An idle run samples its steps at most this many progress intervals apart.
IDLE_SAMPLING = 8


class StepMisuse(Exception):
    """A step broke its contract (a result that is not JSON, a coroutine
    from a plain function); the message is the step's error as it stands."""


class Scheduler:
    """One run of a list of steps. Create, then `await run()` once."""

    def __init__(
        self,
        steps: Sequence[Step],
        params: Mapping[str, Any] | None = None,
        *,
        signal: InterruptSignal | None = None,
        strategy: InterruptStrategy | None = None,
        on_step: StepListener | None = None,
        concurrency: int = 16,
        progress_interval: float | Pace = 0.05,
        stall_after: float = 10.0,
        skip: Sequence[str] = (),
        results: Mapping[str, Any] | None = None,
        restricted: bool = False,
        on_log: LogListener | None = None,
        log_rate: float = RATE,
        log_burst: int = BURST,
        log_fallback: bool = False,
    ) -> None:
        check_graph(steps)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.steps = {step.id: step for step in steps}
        # A Cmd's `bind()` types them; a plain mapping is read as it is.
        self.params = params if isinstance(params, Params) else Params(params)
        self.restricted = restricted
        self.signal = signal or InterruptSignal()
        self.strategy = strategy or InterruptStrategy()
        self.on_step = on_step
        self.concurrency = concurrency
        #: How often steps are sampled: seconds, or a Pace its owner changes.
        self.pace = (
            progress_interval
            if isinstance(progress_interval, Pace)
            else Pace(progress_interval)
        )
        self._idle_pause = self.pace.interval * IDLE_SAMPLING
        self.stall_after = stall_after
        self.states = {
            step.id: StepState(
                id=step.id,
                title=step.title,
                after=step.after,
                total=step.total,
                unit=step.unit,
            )
            for step in steps
        }
        # Steps already done in an earlier run (resume): treated as succeeded,
        # with the results that run stored for them.
        carried = dict(results or {})
        self._skip = _skippable(self.steps, set(skip) & set(self.steps), carried)
        #: Each succeeded step's result (JSON), by step id.
        self.results: dict[str, Any] = {
            step_id: carried[step_id] for step_id in self._skip if step_id in carried
        }
        self._trackers: dict[str, ProgressTracker] = {}
        self._emitted: dict[str, tuple] = {}
        self._granted: set[str] = set()
        # Dispatches still allowed once the signal is seen (poll-next-n).
        self._grace = self.strategy.grace
        #: Log lines go to `on_log` in one batch per progress interval, with
        #: how many were dropped over the rate; None: the run keeps no log.
        self.on_log = on_log
        self.log_fallback = log_fallback
        self.logs = (
            LogSink(rate=log_rate, burst=log_burst) if on_log is not None else None
        )

    # -- interrupt semantics -------------------------------------------------

    def _step_should_stop(self, step_id: str) -> bool:
        if self.signal.force:
            return True
        if not self.signal.requested or self.strategy.kind == "ignore":
            return False
        # Under poll-next-n a step in flight when the signal arrives keeps
        # going while the budget lasts: stopping it would keep its dependents
        # from ever being dispatched within the budget.
        return self._grace == 0 and step_id not in self._granted

    # -- outputs ---------------------------------------------------------------

    def _emit(self, state: StepState) -> None:
        if self.on_step is None:
            return
        try:
            self.on_step(dataclasses.replace(state))
        except Exception:
            logger.exception("step listener failed for %s", state.id)

    def _sample(self, step_id: str, now: float) -> bool:
        """Copy a tracker into its state; return True if anything changed."""
        sample = self._trackers[step_id].sample()
        if self._emitted.get(step_id) == sample:
            return False
        self._emitted[step_id] = sample
        state = self.states[step_id]
        state.done, state.total, state.unit, state.message = sample
        state.last_change = now
        return True

    def _flush_logs(self) -> bool:
        """Hand the lines logged since the last sample on; whether any were."""
        if self.logs is None:
            return False
        lines, dropped = self.logs.drain()
        if not lines and not dropped:
            return False
        try:
            self.on_log(lines, dropped)
        except Exception:
            logger.exception("log listener failed")
        return True

    async def _sample_loop(self) -> None:
        # While nothing moves (a step waiting on I/O), the samples space out
        # to IDLE_SAMPLING x the interval: an idle execution process wakes a
        # few times a second, not twenty. The first change is sampled at the
        # interval again. A slower pace (nobody watches) is never stretched.
        pause = self.pace.interval
        while True:
            await self.pace.sleep(pause)
            moved = self._flush_logs()
            now = time.monotonic()
            for step_id, state in self.states.items():
                if state.status not in ACTIVE_STEP_STATUSES:
                    continue
                changed = self._sample(step_id, now)
                moved = moved or changed
                if changed and state.status is StepStatus.STALLED:
                    state.status = StepStatus.RUNNING
                elif not changed and state.status is StepStatus.RUNNING:
                    if now - state.last_change < self.stall_after:
                        continue
                    state.status = StepStatus.STALLED
                elif not changed:
                    continue
                self._emit(state)
            if moved:
                pause = self.pace.interval
            else:
                pause = min(pause * 2, max(self.pace.interval, self._idle_pause))

    # -- running steps -----------------------------------------------------------

    def _start(self, step_id: str) -> asyncio.Future:
        step = self.steps[step_id]
        state = self.states[step_id]
        tracker = ProgressTracker(total=step.total, unit=step.unit)
        self._trackers[step_id] = tracker
        ctx = StepContext(
            step_id,
            self.params,
            tracker,
            lambda: self._step_should_stop(step_id),
            signal=self.signal,
            restricted=self.restricted,
            is_async=step.is_async,
            sink=self.logs,
            forced=lambda: self.signal.force,
        )
        route = Route(self.logs, step_id) if self.logs is not None else None
        inputs = {name: self.results.get(name) for name in step.inputs}
        state.status = StepStatus.RUNNING
        state.started_at = time.time()
        self._sample(step_id, time.monotonic())
        self._emit(state)
        if step.is_async:
            return asyncio.ensure_future(_run_async(step, ctx, inputs, route))
        return _run_in_thread(step, ctx, inputs, route)

    def _finish(
        self,
        step_id: str,
        status: StepStatus,
        error: str | None = None,
        result: Any = None,
        trace: str | None = None,
    ) -> None:
        state = self.states[step_id]
        if step_id in self._trackers:
            self._sample(step_id, time.monotonic())
        if self.logs is not None:
            self.logs.end(step_id)
            if trace:
                self.logs.write(step_id, "error", trace, always=True)
            # A step's lines go out before the event that says it ended.
            self._flush_logs()
        if status is StepStatus.SUCCEEDED:
            if step_id not in self._skip:
                self.results[step_id] = result
            state.result = self.results.get(step_id)
        state.status = status
        state.error = error
        state.traceback = trace
        state.finished_at = time.time()
        self._emit(state)

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_signal() -> None:
            # A closed loop means the run is over anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

        self.signal.add_listener(on_signal)
        with contextlib.ExitStack() as stack:
            if self.logs is not None:
                # Entered here, so the sampler task and every step's task
                # start inside the run's route.
                stack.enter_context(capturing(self.logs, fallback=self.log_fallback))
            sampler = asyncio.ensure_future(self._sample_loop())
            try:
                await self._drive(wake)
            finally:
                self.signal.remove_listener(on_signal)
                sampler.cancel()
                if self.logs is not None:
                    self.logs.end(None)
                self._flush_logs()
        return self._outcome()

    async def _drive(self, wake: asyncio.Event) -> None:
        waiting = {step_id: set(step.after) for step_id, step in self.steps.items()}
        dependents: dict[str, list[str]] = defaultdict(list)
        for step_id, step in self.steps.items():
            for dependency in step.after:
                dependents[dependency].append(step_id)
        ready: deque[str] = deque()
        running: dict[asyncio.Future, str] = {}
        stopping = failed = False

        def complete(step_id: str) -> None:
            # Iterative: resuming a long chain of skipped steps must not recurse.
            finished = [step_id]
            while finished:
                current = finished.pop()
                for dependent in dependents[current]:
                    waiting[dependent].discard(current)
                    if waiting[dependent]:
                        continue
                    if dependent in self._skip:
                        self._finish(dependent, StepStatus.SUCCEEDED)
                        finished.append(dependent)
                    else:
                        ready.append(dependent)

        # The roots are taken first: completing a skipped root empties its
        # dependents' `waiting`, and they must not be taken for roots too.
        roots = [step_id for step_id, deps in waiting.items() if not deps]
        for step_id in roots:
            if step_id in self._skip:
                self._finish(step_id, StepStatus.SUCCEEDED)
                complete(step_id)
            else:
                ready.append(step_id)

        while True:
            # Dispatch: one checkpoint before each step.
            while ready and len(running) < self.concurrency and not stopping:
                if self.signal.force:
                    stopping = True
                    break
                if self.signal.requested and self.strategy.kind != "ignore":
                    if self._grace == 0:
                        stopping = True
                        break
                    self._grace -= 1
                    self._granted.add(ready[0])
                step_id = ready.popleft()
                running[self._start(step_id)] = step_id

            if self.signal.force and running:
                await self._force_stop(running)
                return
            if not running:
                return

            waiter = asyncio.ensure_future(wake.wait())
            done, _ = await asyncio.wait(
                [*running, waiter], return_when=asyncio.FIRST_COMPLETED
            )
            wake.clear()
            waiter.cancel()
            for future in done:
                step_id = running.pop(future, None)
                if step_id is None:
                    continue
                status, error, result = _result(future)
                self._finish(step_id, status, error, result, _traceback(future))
                if status is StepStatus.SUCCEEDED:
                    complete(step_id)
                elif status is StepStatus.FAILED and not failed:
                    failed = stopping = True

    async def _force_stop(self, running: dict[asyncio.Future, str]) -> None:
        tasks = [future for future in running if isinstance(future, asyncio.Task)]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a step that swallows cancellation cannot hold the run.
            await asyncio.wait(tasks, timeout=1.0)
        for future, step_id in running.items():
            if future.done() and not future.cancelled():
                status, error, result = _result(future)
                if status is not StepStatus.INTERRUPTED:
                    self._finish(step_id, status, error, result, _traceback(future))
                    continue
            abandoned = not isinstance(future, asyncio.Task)
            if abandoned:
                # Whatever its thread raises later is nobody's to retrieve:
                # an exception left on the future would be logged at GC.
                future.cancel()
            self._finish(
                step_id, StepStatus.INTERRUPTED, ABANDONED if abandoned else CANCELLED
            )
        running.clear()

    def _outcome(self) -> Outcome:
        for state in self.states.values():
            if state.status is StepStatus.PENDING:
                state.status = StepStatus.SKIPPED
                self._emit(state)
        processed = tuple(
            step_id
            for step_id, state in self.states.items()
            if state.status is StepStatus.SUCCEEDED
        )
        not_processed = tuple(
            step_id
            for step_id, state in self.states.items()
            if state.status is not StepStatus.SUCCEEDED
        )
        errors = {
            step_id: state.error
            for step_id, state in self.states.items()
            if state.status is StepStatus.FAILED and state.error
        }
        if any(state.status is StepStatus.FAILED for state in self.states.values()):
            kind = OutcomeKind.FAILED
        elif not_processed:
            kind = OutcomeKind.INTERRUPTED
        else:
            kind = OutcomeKind.COMPLETE
        return Outcome(kind, processed, not_processed, errors)


def _skippable(
    steps: Mapping[str, Step], skip: set[str], results: Mapping[str, Any]
) -> set[str]:
    """The steps to skip on resume: those asked for, less any whose result a
    step that runs takes but which was not stored (an earlier run from before
    results were kept): that one runs again rather than pass on nothing."""
    skip = set(skip)
    changed = True
    while changed:
        changed = False
        for step_id, step in steps.items():
            if step_id in skip:
                continue
            for name in step.inputs:
                if name in skip and name not in results:
                    skip.discard(name)
                    changed = True
    return skip


def _result(future: asyncio.Future) -> tuple[StepStatus, str | None, Any]:
    if future.cancelled():
        return StepStatus.INTERRUPTED, CANCELLED, None
    error = future.exception()
    if error is None:
        return StepStatus.SUCCEEDED, None, future.result()
    if isinstance(error, StepInterrupted):
        return StepStatus.INTERRUPTED, None, None
    if isinstance(error, asyncio.CancelledError):
        return StepStatus.INTERRUPTED, CANCELLED, None
    if isinstance(error, StepMisuse):
        return StepStatus.FAILED, str(error), None
    return StepStatus.FAILED, f"{type(error).__name__}: {error}", None


def _traceback(future: asyncio.Future) -> str | None:
    """A failed step's traceback, from the step's own code on (the engine's
    frames above it say nothing to the reader)."""
    if future.cancelled():
        return None
    error = future.exception()
    if error is None or isinstance(
        error, StepInterrupted | StepMisuse | asyncio.CancelledError
    ):
        return None
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    return "".join(traceback.format_exception(type(error), error, frames)).rstrip()


def _as_json(step: Step, value: Any) -> Any:
    """The result as it will be stored and read back on resume, so a
    dependent sees the same value in a fresh run and in a resumed one."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise StepMisuse(
            f"step {step.id} returned a value that is not JSON: {error}"
        ) from None


async def _run_async(
    step: Step, ctx: StepContext, inputs: dict[str, Any], route: Route | None
) -> Any:
    # Called inside the task, so that even a call that raises at once (wrong
    # arguments) fails this step rather than the run; and the route set here
    # is this task's alone.
    enter(route)
    return _as_json(step, await step.func(ctx, **inputs))


def _call_sync(step: Step, ctx: StepContext, inputs: dict[str, Any]) -> Any:
    result = step.func(ctx, **inputs)
    if inspect.isawaitable(result):
        # A plain function (a lambda, say) that hands back a coroutine: in a
        # thread it would never be awaited, and the step would claim success.
        if inspect.iscoroutine(result):
            result.close()
        raise StepMisuse(
            f"step {step.id} is a plain function but returned an awaitable "
            f"({type(result).__name__}) that would never run: make it `async def`"
        )
    return _as_json(step, result)


def _run_in_thread(
    step: Step, ctx: StepContext, inputs: dict[str, Any], route: Route | None
) -> asyncio.Future:
    """Run a sync step in a daemon thread, so a forced stop can abandon it
    without the process waiting for it at exit."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def target() -> None:
        enter(route)  # a thread starts with a context of its own
        try:
            result = _call_sync(step, ctx, inputs)
        except BaseException as error:
            outcome = (future.set_exception, error)
        else:
            outcome = (future.set_result, result)
        # A closed loop means the run was forced to stop and is gone.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=target, name=f"step-{step.id}", daemon=True).start()
    return future


async def run_steps(steps: Sequence[Step], params=None, **options) -> Outcome:
    """Run steps to an outcome: `Scheduler(steps, params, **options).run()`."""
    return await Scheduler(steps, params, **options).run()
