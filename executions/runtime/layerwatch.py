"""Noticing that the channel layer lost messages, so open sockets resync.

A shared layer (Redis) drops what is published while it is away, and its
pub/sub layer does not tell its receivers: a run that ended during an outage
would leave every watcher on its last step event, forever. So each server
sends itself a probe through the layer every PROBE_EVERY seconds; a probe
that fails or is not heard back within PROBE_TIMEOUT opens a gap, and the
first probe heard after it closes the gap: every open socket of this server
then gets a fresh snapshot from the database, as if it had asked to resync.
The probe is heard through the same subscription as the sockets' groups, so
once it is heard again they are listening again, and the snapshot read after
that misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from .throttle import Throttled

logger = logging.getLogger(__name__)
quiet = Throttled(logger)

PROBE_EVERY = 1.0
PROBE_TIMEOUT = 3.0
PROBE = "layerwatch.probe"

#: This process's open sockets: each has `async def resync_after_gap()`.
sockets: weakref.WeakSet = weakref.WeakSet()


async def watch(layer) -> None:
    """Probe `layer` until cancelled; resync every open socket after a gap."""
    state = {"heard_at": time.monotonic(), "gap": False}
    channel = None
    listener = None
    try:
        while True:
            try:
                if channel is None:
                    channel = await layer.new_channel("layerwatch.")
                    listener = asyncio.ensure_future(_listen(layer, channel, state))
                await layer.send(channel, {"type": PROBE})
            except Exception as error:
                _gap(state, "probing the channel layer failed", error)
            if time.monotonic() - state["heard_at"] > PROBE_TIMEOUT:
                _gap(state, "the channel layer lost a probe")
            await asyncio.sleep(PROBE_EVERY)
    finally:
        if listener is not None:
            listener.cancel()


def _gap(state: dict, what: str, error: Exception | None = None) -> None:
    if error is not None:
        what += f" ({type(error).__name__}: {error})"
    if not state["gap"]:
        what += ": open sockets resync once it is back"
    quiet.warning("gap", "%s", what)
    state["gap"] = True


async def _listen(layer, channel: str, state: dict) -> None:
    while True:
        try:
            await layer.receive(channel)
        except Exception as error:
            # The core layer's receive fails while Redis is away.
            _gap(state, "receiving from the channel layer failed", error)
            await asyncio.sleep(PROBE_EVERY)
            continue
        state["heard_at"] = time.monotonic()
        if state["gap"]:
            state["gap"] = False
            quiet.recovered("gap")
            await resync_all()


async def resync_all() -> None:
    """A fresh snapshot to every open socket of this process."""
    open_sockets = list(sockets)
    logger.warning(
        "the channel layer is back: resyncing %d open sockets", len(open_sockets)
    )
    results = await asyncio.gather(
        *(socket.resync_after_gap() for socket in open_sockets),
        return_exceptions=True,
    )
    failed = [result for result in results if isinstance(result, Exception)]
    if failed:
        logger.warning("%d sockets could not resync", len(failed), exc_info=failed[0])
