"""Flow control for websockets: how much the server holds for a client that
does not read, and how fast a client may send.

daphne writes whatever a consumer sends into the connection's Twisted
transport, which buffers without limit when the client does not read. The
transport says when its buffer passes its high-water mark (64 KiB) and when
it has drained, through Twisted's push-producer interface (`pauseProducing`,
`resumeProducing`); `Outbox` registers for those calls and counts the bytes
sent while the transport is paused, so the consumer can disconnect a client
before the server holds more than `limit` for it.
"""

from __future__ import annotations

import functools
import time
from typing import Any


def _daphne_protocol(send: Any) -> Any:
    """The daphne connection behind an ASGI `send`, or None under another
    server. daphne hands each application `partial(server.handle_reply,
    protocol)`; channels' session middleware wraps that in a bound `send`
    that keeps it as `real_send`."""
    for _ in range(8):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            return protocol if hasattr(protocol, "registerProducer") else None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None


class Outbox:
    """Bytes sent to one client that it has not taken yet (beyond what the
    transport holds before it pushes back). `tracking` is False where the
    server gives no such signal (not daphne): then nothing is counted."""

    def __init__(self, send: Any, *, limit: int) -> None:
        self.limit = limit
        self.paused = False
        self.held = 0
        protocol = _daphne_protocol(send)
        try:
            if protocol is not None:
                protocol.registerProducer(self, True)
        except (AttributeError, RuntimeError):
            # No transport yet, or another producer already registered.
            protocol = None
        self.tracking = protocol is not None

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes keep what is held within the limit."""
        return not self.paused or self.held + size <= self.limit

    def sent(self, size: int) -> None:
        if self.paused:
            self.held += size

    # -- twisted.internet.interfaces.IPushProducer ------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        # The transport calls this once its buffer is empty.
        self.paused = False
        self.held = 0

    def stopProducing(self) -> None:
        self.paused = True


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
