"""The Channels worker behind `manage.py runworker executions`.

It takes executions from the database queue (a channel-layer message only
wakes it), runs up to EXECUTIONS_WORKER_CONCURRENCY at once, keeps house, and
on SIGTERM or Ctrl-C drains: every run is interrupted gracefully, recorded
with source `shutdown`, and forced after the grace period. Channel-layer
errors (Redis restarting) back off and retry instead of killing the worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from channels.worker import Worker

from ..conf import conf
from . import groups, process
from .supervisor import Supervisor

logger = logging.getLogger(__name__)


class ExecutionsWorker(Worker):
    supervisor: Supervisor | None = None

    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        background = [asyncio.ensure_future(self.listener(c)) for c in self.channels]
        if groups.WORKER_CHANNEL in self.channels:
            self.supervisor = Supervisor(
                queue=groups.WORKER_CHANNEL,
                concurrency=conf.WORKER_CONCURRENCY,
            )
            self.supervisor.ensure_housekeeping()
            background.append(asyncio.ensure_future(self.supervisor.take_work()))
            loop.run_in_executor(None, process.warm_up)
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, self.shutdown)
            logger.warning(
                "worker %s takes executions, %d at a time",
                self.supervisor.identity,
                self.supervisor.concurrency,
            )
        try:
            await self._stopped.wait()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    def shutdown(self) -> None:
        if self.supervisor.draining:
            return  # already draining: the grace period ends in force
        logger.warning("worker %s draining", self.supervisor.identity)
        asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            await self.supervisor.drain()
        finally:
            self._stopped.set()

    async def listener(self, channel: str) -> None:
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis restarting: the database queue still holds the work.
                logger.warning("receiving on %s failed; retrying", channel)
                await asyncio.sleep(1.0)
                continue
            if channel == groups.WORKER_CHANNEL:
                self.supervisor.wake()
                continue
            if not message.get("type"):
                logger.warning("dropped a message with no type on %s", channel)
                continue
            scope = {"type": "channel", "channel": channel}
            queue = self.get_or_create_application_instance(channel, scope)
            await queue.put(message)
