"""An execution's control group, as its supervisor and its execution process
hear it (DESIGN.md, "Where executions run").

Doors `group_send` an interrupt to the execution's control group. The
supervisor is always in it: it relays each interrupt to the execution
process over their socket pair, starts the escalation ladder on a forced
one, and hears watchers join. When the channel layer reaches across
processes (Redis), the execution process joins the group as well and sets
its own signal as the message arrives, without waiting for the supervisor's
loop and the relay (a client's request to the signal, p50 over five
alternated pairs of runs: 2.67 → 2.41 ms). Whichever hears first sets the
signal; the other copy changes nothing, and the acknowledgement tells the
supervisor what the signal holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from channels.layers import InMemoryChannelLayer

from ..conf import conf
from .throttle import Throttled

logger = logging.getLogger(__name__)
#: Failures that repeat while Redis is away: a line each so often.
quiet = Throttled(logger)


def spans_processes(layer) -> bool:
    """Whether a message sent through `layer` in one process reaches a
    member of the group in another (not so in memory)."""
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


async def listen(
    layer, group: str, on_message: Callable[[dict], None], *, leave: bool = True
) -> None:
    """Hear `group` until cancelled, each message handed to `on_message`.

    On the app's own layers the channel is heard: each message is handed on
    in its sender's call on the in-memory layer (`layers`), so an interrupt
    is relayed before the door's push returns, and in the reader's call on
    the pub/sub layer (`pubsub`), with no task to wake for it on the loop's
    next turn. Other layers' channels are read.

    The group is re-joined every `EXECUTIONS_REJOIN_INTERVAL`: Redis forgets
    memberships after `group_expiry` and across a restart, and a run may
    outlive both. Layer errors back off and retry; meanwhile the database
    poll still delivers. `leave`: discard the membership when cancelled (a
    round trip an execution process on its way out does without: its
    connection goes with it)."""
    channel = await layer.new_channel()
    heard = callable(getattr(layer, "hear", None))
    if heard:
        layer.hear(channel, on_message)
    rejoin = asyncio.ensure_future(_keep_joined(layer, group, channel))
    try:
        if heard:
            await asyncio.Future()  # until cancelled
        while True:
            try:
                message = await layer.receive(channel)
            except Exception:
                quiet.warning("control", "control channels failing", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            on_message(message)
    finally:
        rejoin.cancel()
        if heard:
            layer.unhear(channel)
        if leave:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)
            # Nobody receives a heard channel, whose going would unsubscribe
            # it: on the pub/sub layer, that is done here, Redis away or not
            # (the layer forgets it first).
            if heard and hasattr(layer, "close_channel"):
                with contextlib.suppress(Exception):
                    await layer.close_channel(channel)


async def _keep_joined(layer, group: str, channel: str) -> None:
    while True:
        try:
            await layer.group_add(group, channel)
        except Exception:
            quiet.warning("join", "joining control groups failing; retrying")
            await asyncio.sleep(1.0)
            continue
        await asyncio.sleep(conf.REJOIN_INTERVAL)
