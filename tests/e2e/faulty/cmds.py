"""Steps that hog a core, block, ignore interrupts, or kill their process."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from pathlib import Path
from typing import Annotated

from executions.engine import Between, command

Seconds = Annotated[float, Between(0, 600)]


@command("faulty.cpu", title="Burn a core on the event loop")
def cpu(seconds: Seconds = 30.0):
    """An async step that never awaits: it holds its event loop."""


@cpu.step(title="Spin")
async def spin(ctx) -> None:
    deadline = time.monotonic() + ctx.params.seconds
    while time.monotonic() < deadline:
        ctx.checkpoint()
        sum(range(1000))


@command("faulty.block", title="Block a thread, deaf to interrupts")
def block(seconds: Seconds = 30.0):
    """A plain def step that sleeps through any graceful interrupt."""


@block.step(title="Sleep")
def sleep(ctx) -> None:
    time.sleep(ctx.params.seconds)


@command("faulty.write_later", title="Write a file after a while")
def write_later(path: str, delay: Seconds = 3.0):
    """A plain def step that never checks for interrupts, then writes."""


@write_later.step(title="Wait, then write")
def wait_then_write(ctx) -> None:
    time.sleep(ctx.params.delay)
    Path(ctx.params.path).write_text("written after the run ended\n")


@command("faulty.niceness", title="Write the process's CPU priority to a file")
def niceness(path: str):
    """A step that records the `nice` value its execution process runs at."""


@niceness.step(title="Write the priority")
def write_niceness(ctx) -> None:
    Path(ctx.params.path).write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))


@command("faulty.exit", title="Exit the process")
def exit_(code: Annotated[int, Between(0, 255)] = 3):
    """A step that ends its process with os._exit."""


@exit_.step(title="Exit")
def exit_now(ctx) -> None:
    os._exit(ctx.params.code)


@command("faulty.segfault", title="Crash the process")
def segfault():
    """A step that reads address 0."""


@segfault.step(title="Read address 0")
def read_null(ctx) -> None:
    ctypes.string_at(0)


@command("faulty.chatty", title="Log long lines as fast as it may")
def chatty(seconds: Seconds = 60.0, chars: Annotated[int, Between(1, 4000)] = 4000):
    """An async step that prints lines of `chars` characters faster than the
    log rate lets through, so its watchers get megabytes a second."""


@chatty.step(title="Chatter")
async def chatter(ctx) -> None:
    line = "x" * ctx.params.chars
    deadline = time.monotonic() + ctx.params.seconds
    while time.monotonic() < deadline:
        ctx.checkpoint()
        for _ in range(20):
            print(line)
        await asyncio.sleep(0.01)
