"""Logging a failure that repeats (Redis down for a while) without flooding
the log: the first time with its traceback, then at most once per interval
with the count of those left out."""

from __future__ import annotations

import logging
import time

#: Seconds between two lines about the same failure.
EVERY = 30.0


class Throttled:
    """A logger's warnings, at most one per `key` per `every` seconds."""

    def __init__(self, logger: logging.Logger, every: float = EVERY) -> None:
        self.logger = logger
        self.every = every
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, key: str, message: str, *args, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return
        left_out = self._left_out.pop(key, 0)
        if left_out:
            message += f" (and {left_out} more like it in the last %.0f s)"
            args = (*args, now - last)
        self._last[key] = now
        # The traceback once: the repeats are the same failure.
        self.logger.warning(message, *args, exc_info=exc_info and last is None)

    def recovered(self, key: str) -> None:
        """The failure is over: the next one is news again."""
        if self._last.pop(key, None) is not None:
            self._left_out.pop(key, None)


class RepeatFilter(logging.Filter):
    """For a library's logger that repeats itself while a peer is down
    (channels_redis logs a traceback every second Redis is away): the same
    message passes once per `every` seconds. Install it in LOGGING:

        "filters": {"repeats": {"()": "executions.runtime.throttle.RepeatFilter"}},
        "loggers": {"channels_redis.pubsub": {"filters": ["repeats"]}},
    """

    def __init__(self, every: float = EVERY) -> None:
        super().__init__()
        self.every = every
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        self._last[key] = now
        return True
