"""Flow control for websockets: how much the server holds for a client that
does not read, how large a message a client may send, and how fast.

daphne writes whatever a consumer sends into the connection's Twisted
transport, which buffers without limit when the client does not read. The
transport says when its buffer passes its high-water mark (64 KiB) and when
it has drained, through Twisted's push-producer interface (`pauseProducing`,
`resumeProducing`) to its one registered producer; `Outbox` becomes that
producer and counts the bytes sent while the transport is paused, so the
consumer can disconnect a client before the server holds more than `limit`
for it.

daphne puts nothing of its connection in the ASGI scope, so both reach it
through the ASGI `send` it hands the application (`daphne_connection`).
Under another server, or if a daphne or channels upgrade changes that
chain, they find nothing and do nothing; tests/e2e/test_flood.py then fails
(a client that never reads is not cut off; a frame over the limit is
dropped without a close frame).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from typing import Any

logger = logging.getLogger(__name__)

#: The largest client message daphne is started with
#: (`--websocket-max-message-size`, and the same for one frame). Up to it a
#: message reaches the consumer, which refuses one over
#: DATA_UPLOAD_MAX_MEMORY_SIZE with `too_large` and stays open; over it
#: autobahn closes the socket with 1009. daphne's own default is 1 MiB.
SERVER_MESSAGE_LIMIT = 4 * 1024 * 1024
#: The daphne command-line options that set it.
DAPHNE_ARGS = (
    f"--websocket-max-message-size={SERVER_MESSAGE_LIMIT}",
    f"--websocket-max-frame-size={SERVER_MESSAGE_LIMIT}",
)


def daphne_connection(send: Any) -> Any:
    """The daphne connection behind an ASGI `send`, or None under another
    server. daphne hands each application `partial(server.handle_reply,
    protocol)`; channels' session middleware wraps that in a bound `send`
    that keeps it as `real_send`, and a decorated one keeps `__wrapped__`."""
    # Served by daphne, daphne has imported it; importing it here would
    # bring in Twisted under another server.
    protocols = sys.modules.get("daphne.ws_protocol")
    if protocols is None:
        return None
    for _ in range(8):
        if isinstance(send, functools.partial):
            connection = send.args[0] if send.args else None
            return (
                connection
                if isinstance(connection, protocols.WebSocketProtocol)
                else None
            )
        wrapped = getattr(send, "__wrapped__", None)
        if wrapped is None:
            wrapped = getattr(getattr(send, "__self__", None), "real_send", None)
        if wrapped is None:
            return None
        send = wrapped
    return None


def close_frames_on_failure(connection: Any) -> None:
    """Make the connection fail with a close frame rather than a dropped
    TCP connection: a message over SERVER_MESSAGE_LIMIT then closes with
    1009 and autobahn's reason (a protocol error with 1002, bad UTF-8 with
    1007) instead of reaching the client as 1006 with no reason. This is
    autobahn's `failByDrop` protocol option, which daphne leaves at its
    default (drop) and offers no option for."""
    if connection is not None:
        connection.failByDrop = False


@functools.cache
def _cannot_track(reason: str) -> None:
    """Say once per process and reason that daphne's connections are not
    bounded: this failed silently once, for every socket."""
    logger.warning(
        "Websockets: cannot bound what the server holds for a client that does "
        "not read (%s). A daphne, Twisted or channels upgrade may have changed "
        "the connection; see executions/flow.py.",
        reason,
    )


class Outbox:
    """Bytes sent to one client that it has not taken yet (beyond what the
    transport holds before it pushes back). `tracking` is False where the
    server gives no such signal (`connection` None: not daphne): then
    nothing is counted."""

    def __init__(self, connection: Any, *, limit: int) -> None:
        self.limit = limit
        self.paused = False
        self.held = 0
        self.previous: Any = None
        self.tracking = connection is not None and self._register(
            getattr(connection, "transport", None)
        )

    def _register(self, transport: Any) -> bool:
        """Become the transport's producer. A transport has one producer,
        and daphne's upgrade leaves the HTTP channel that read the handshake
        registered there (Twisted's HTTPChannel registers itself for the
        life of the connection), so registering beside it fails: take its
        place and pass its calls on, so what it does stays as it was."""
        try:
            previous = transport.producer
            if previous is not None:
                transport.unregisterProducer()
            transport.registerProducer(self, True)
        except (AttributeError, RuntimeError) as error:
            _cannot_track(repr(error))
            return False
        self.previous = previous
        return True

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes keep what is held within the limit."""
        return not self.paused or self.held + size <= self.limit

    def sent(self, size: int) -> None:
        if self.paused:
            self.held += size

    # -- twisted.internet.interfaces.IPushProducer ------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        if self.previous is not None:
            self.previous.pauseProducing()

    def resumeProducing(self) -> None:
        # The transport calls this once its buffer is empty.
        self.paused = False
        self.held = 0
        if self.previous is not None:
            self.previous.resumeProducing()

    def stopProducing(self) -> None:
        self.paused = True
        if self.previous is not None:
            self.previous.stopProducing()


class TokenBucket:
    """At most `burst` messages at once, `rate` a second over time."""

    def __init__(self, *, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
