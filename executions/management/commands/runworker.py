"""`runworker`, as Channels ships it, with the executions worker: it drains
runs on SIGTERM and survives channel-layer restarts."""

from __future__ import annotations

from channels.management.commands.runworker import Command as ChannelsRunworker

from executions.runtime.worker import ExecutionsWorker


class Command(ChannelsRunworker):
    worker_class = ExecutionsWorker
