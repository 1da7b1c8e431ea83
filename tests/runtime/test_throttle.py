"""A failure that repeats is logged once, then once per interval."""

from __future__ import annotations

import logging

from executions.runtime import throttle
from executions.runtime.throttle import Throttled

LOGGER = logging.getLogger("tests.throttle")


def fail() -> None:
    try:
        raise ConnectionError("redis is down")
    except ConnectionError:
        quiet.warning("layer", "send failed", exc_info=True)


quiet = Throttled(LOGGER, every=60)


def test_a_flood_of_the_same_failure_is_one_line_with_its_traceback(caplog):
    quiet.recovered("layer")

    for _ in range(5000):
        fail()

    assert [record.getMessage() for record in caplog.records] == ["send failed"]
    assert caplog.records[0].exc_info is not None


def test_the_next_line_counts_what_was_left_out(caplog, monkeypatch):
    quiet.recovered("layer")
    clock = iter([0.0] + [1.0] * 9 + [61.0])
    monkeypatch.setattr(throttle.time, "monotonic", lambda: next(clock))

    for _ in range(11):
        fail()

    assert [record.getMessage() for record in caplog.records] == [
        "send failed",
        "send failed (and 9 more like it in the last 61 s)",
    ]
    assert not caplog.records[1].exc_info


def test_after_recovery_a_failure_is_news_again(caplog):
    quiet.recovered("layer")
    fail()

    quiet.recovered("layer")
    fail()

    assert len(caplog.records) == 2
    assert all(record.exc_info for record in caplog.records)


def test_repeat_filter_passes_a_message_once_per_interval(monkeypatch):
    repeats = throttle.RepeatFilter(every=30)
    clock = iter([0.0, 1.0, 29.0, 31.0])
    monkeypatch.setattr(throttle.time, "monotonic", lambda: next(clock))
    record = logging.LogRecord("lib", logging.ERROR, "", 0, "receive failed", (), None)

    passed = [repeats.filter(record) for _ in range(4)]

    assert passed == [True, False, False, True]
