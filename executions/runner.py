"""The runner: drives one execution's engine run and feeds its events to the
outputs (database, channel layer, terminal), and routes interrupts in.

Interrupts reach the engine's in-memory `InterruptSignal` two ways:
- fast: the runner's channel joins the execution's control group and turns
  each `execution.interrupt` message into a signal request;
- durable: it re-reads the request from the row every POLL_INTERVAL, because
  channel-layer delivery is at most once. No interrupt is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import broadcast, groups
from .conf import conf
from .engine import (
    InterruptSignal,
    InterruptStrategy,
    Outcome,
    OutcomeKind,
    Scheduler,
    StepState,
    registry,
)
from .models import TERMINAL, Execution, Status

logger = logging.getLogger(__name__)

STATUS_FOR_OUTCOME = {
    OutcomeKind.COMPLETE: Status.SUCCEEDED,
    OutcomeKind.INTERRUPTED: Status.INTERRUPTED,
    OutcomeKind.FAILED: Status.FAILED,
}


def runner_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def config(name: str) -> float:
    return getattr(conf, name)


class RunObserver:
    """Something that watches a run in this process (the terminal's bars)."""

    def started(self, execution: Execution) -> None: ...

    def step(self, state: StepState) -> None: ...

    def finished(self, execution: Execution) -> None: ...


@database_sync_to_async
def _load(execution_id) -> Execution:
    return Execution.objects.select_related("resumed_from").get(pk=execution_id)


@database_sync_to_async
def _claim(execution: Execution, runner: str) -> bool:
    return execution.claim(runner)


@database_sync_to_async
def _poll(execution: Execution, beat: bool) -> dict | None:
    """The row's status and interrupt request (None: the row is gone), with
    the heartbeat written on the way when it is due."""
    if beat:
        execution.beat()
    return (
        Execution.objects.filter(pk=execution.pk)
        .values("status", "interrupt_requested_at", "interrupt_force")
        .first()
    )


@database_sync_to_async
def _save_steps(execution: Execution, steps: list[dict]) -> None:
    execution.save_steps(steps)


@database_sync_to_async
def _finish(execution: Execution, status: str, outcome: dict, steps) -> bool:
    return execution.finish(status, outcome=outcome, steps=steps)


async def _stop(helpers: list[asyncio.Future]) -> None:
    """Cancel a run's helpers and wait until they are gone.

    A cancellation can be lost: on Python 3.11, `asyncio.wait_for` (which
    redis-py puts around every socket write) returns the result instead of
    raising when the cancel lands as the write completes. A helper that lives
    on would hold the run, and its worker's slot, forever: each one still
    running is cancelled again."""
    pending = set(helpers)
    while pending:
        for helper in pending:
            helper.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
    await asyncio.gather(*helpers, return_exceptions=True)


def done_before(execution: Execution) -> list[str]:
    """For a resumed execution, the steps that succeeded in the run it
    resumes: they are not run again."""
    if execution.resumed_from is None:
        return []
    return [
        step["id"]
        for step in execution.resumed_from.steps
        if step["status"] == "succeeded"
    ]


class Runner:
    """Runs one execution to its end. Create, then `await run()` once."""

    def __init__(
        self,
        execution_id,
        *,
        signal: InterruptSignal | None = None,
        observers: Iterable[RunObserver] = (),
        runner_id: str | None = None,
        claimed: bool = False,
    ) -> None:
        self.execution_id = execution_id
        #: True when the caller already claimed the row (a worker's queue).
        self.claimed = claimed
        self.signal = signal or InterruptSignal()
        self.observers = list(observers)
        self.runner_id = runner_id or runner_identity()
        self._steps: dict[str, dict] = {}
        self._dirty = asyncio.Event()
        # Outgoing step events, coalesced: the latest per step wins if the
        # layer is slower than the engine.
        self._outbox: dict[str, dict] = {}
        self._outbox_ready = asyncio.Event()
        self._closing = False

    async def run(self) -> Execution:
        execution = await _load(self.execution_id)
        try:
            cmd = registry.get(execution.cmd)
            steps = cmd.build(execution.params)
            strategy = InterruptStrategy.parse(execution.strategy)
        except Exception as error:  # the command changed or vanished since
            logger.exception("cannot run execution %s", execution.id)
            steps, strategy, setup_error = None, None, error
        if not self.claimed and not await _claim(execution, self.runner_id):
            return await _load(self.execution_id)  # interrupted while queued
        # claim() left the instance as the row now stands.
        await broadcast.status_changed(execution.snapshot())
        for observer in self.observers:
            observer.started(execution)
        self._steps = {step["id"]: dict(step) for step in execution.steps}

        helpers = [
            asyncio.ensure_future(self._listen_for_interrupts(execution)),
            asyncio.ensure_future(self._poll_database(execution)),
            asyncio.ensure_future(self._write_progress(execution)),
        ]
        sender = asyncio.ensure_future(self._send_progress(execution))
        try:
            if steps is None:
                outcome = Outcome(
                    OutcomeKind.FAILED,
                    (),
                    tuple(self._steps),
                    {"setup": f"{type(setup_error).__name__}: {setup_error}"},
                )
            else:
                outcome = await Scheduler(
                    steps,
                    execution.params,
                    signal=self.signal,
                    strategy=strategy,
                    on_step=self._on_step,
                    progress_interval=config("PROGRESS_INTERVAL"),
                    skip=done_before(execution),
                ).run()
        finally:
            # The sender is told to finish rather than cancelled mid-send
            # (see `_stop`); what it leaves, the flush below sends.
            self._closing = True
            self._outbox_ready.set()
            await asyncio.wait([sender], timeout=1.0)
            await _stop([*helpers, sender])
        await self._flush_progress(execution)

        await _finish(
            execution,
            STATUS_FOR_OUTCOME[outcome.kind],
            outcome.to_dict(),
            list(self._steps.values()),
        )
        # If that refused, the row was already final (reaped as lost): the
        # database stays the truth, and watchers are told what it says.
        try:
            execution = await _load(self.execution_id)
        except Execution.DoesNotExist:
            logger.warning("execution %s was deleted while it ran", execution.id)
            return execution
        # `_load` selected everything `snapshot()` reads: no second trip to the
        # database on the way from a stop to the watchers.
        await broadcast.status_changed(execution.snapshot(), groups.FINISHED)
        for observer in self.observers:
            observer.finished(execution)
        return execution

    # -- engine events ---------------------------------------------------------

    def _on_step(self, state: StepState) -> None:
        data = state.to_dict()
        self._steps[state.id] = data
        self._dirty.set()
        self._outbox.pop(state.id, None)
        self._outbox[state.id] = data
        self._outbox_ready.set()
        for observer in self.observers:
            observer.step(state)

    async def _send_progress(self, execution: Execution) -> None:
        group = groups.watch_group(execution.id)
        while not self._closing:
            await self._outbox_ready.wait()
            await self._drain_outbox(execution, group)

    async def _drain_outbox(self, execution: Execution, group: str) -> None:
        self._outbox_ready.clear()
        while self._outbox:
            step_id = next(iter(self._outbox))
            step = self._outbox.pop(step_id)
            await broadcast.send(
                group,
                {"type": groups.STEP, "execution_id": str(execution.id), "step": step},
            )

    async def _write_progress(self, execution: Execution) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await _save_steps(execution, list(self._steps.values()))
            await asyncio.sleep(config("DB_PROGRESS_INTERVAL"))

    async def _flush_progress(self, execution: Execution) -> None:
        """The final value of every step always goes out."""
        await self._drain_outbox(execution, groups.watch_group(execution.id))

    # -- interrupts in -----------------------------------------------------------

    async def _listen_for_interrupts(self, execution: Execution) -> None:
        """The fast path. The group is re-joined periodically: Redis forgets
        memberships after `group_expiry` and across a restart, and a run may
        outlive both. Layer errors back off and retry; meanwhile the database
        poll still delivers."""
        layer = get_channel_layer()
        if layer is None:
            return
        group = groups.control_group(execution.id)
        channel = await layer.new_channel()
        rejoin = asyncio.ensure_future(self._keep_joined(layer, group, channel))
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except Exception:
                    logger.warning("control channel of %s failed", execution.id)
                    await asyncio.sleep(1.0)
                    continue
                if message.get("type") == groups.INTERRUPT:
                    self.signal.request(force=bool(message.get("force")))
        finally:
            rejoin.cancel()
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)

    async def _keep_joined(self, layer, group: str, channel: str) -> None:
        while True:
            try:
                await layer.group_add(group, channel)
            except Exception:
                logger.warning("joining %s failed; retrying", group)
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(config("REJOIN_INTERVAL"))

    async def _poll_database(self, execution: Execution) -> None:
        interval = config("POLL_INTERVAL")
        beat_every = max(1, round(config("HEARTBEAT_INTERVAL") / interval))
        polls = 0
        while True:
            try:
                row = await _poll(execution, beat=polls % beat_every == 0)
            except Exception:
                # A database hiccup must not end the run; the next poll retries.
                logger.warning("polling execution %s failed", execution.id)
            else:
                if row is None or row["status"] in TERMINAL:
                    # Someone ended or deleted this row without us: stop now.
                    self.signal.request(force=True)
                elif row["interrupt_requested_at"] is not None:
                    self.signal.request(force=row["interrupt_force"])
            polls += 1
            await asyncio.sleep(interval)
