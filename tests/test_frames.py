"""Group events as websocket text, encoded once (executions/frames.py)."""

from __future__ import annotations

import json

from executions.frames import Frames


def test_every_watcher_of_an_event_gets_the_text_the_first_one_encoded():
    frames = Frames()
    event = {"type": "execution.progress", "steps": [{"id": "a"}, {"id": "b"}]}

    first = frames.text(event, 0, {"type": "step", "step": {"id": "a"}})
    # What a later watcher made of the same part is not encoded again.
    again = frames.text(event, 0, {"type": "step", "step": "not encoded"})
    other = frames.text(event, 1, {"type": "step", "step": {"id": "b"}})

    assert first == again == ('{"type": "step", "step": {"id": "a"}}', 37)
    assert other == ('{"type": "step", "step": {"id": "b"}}', 37)


def test_each_message_type_made_from_an_event_has_its_own_text():
    frames = Frames()
    event = {"type": "execution.finished", "execution": {"id": "x"}}

    finished = frames.text(event, 0, {"type": "finished", "execution": {"id": "x"}})
    status = frames.text(event, 0, {"type": "status", "execution": {"id": "x"}})

    assert finished[0] != status[0]


def test_a_copy_of_an_event_is_encoded_on_its_own():
    frames = Frames()
    event = {"type": "execution.status"}

    first = frames.text(event, 0, {"type": "status", "n": 1})
    copy = frames.text(dict(event), 0, {"type": "status", "n": 2})

    assert (first[0], copy[0]) == (
        '{"type": "status", "n": 1}',
        '{"type": "status", "n": 2}',
    )


def test_the_size_is_in_utf8_bytes_as_the_outbox_counts_them():
    text, size = Frames().text({}, 0, {"type": "log", "text": "é✓"})

    assert json.loads(text) == {"type": "log", "text": "é✓"}
    assert size == len(text.encode())


def test_the_kept_texts_stay_within_their_count_and_bytes():
    frames = Frames(kept=2, kept_bytes=100)
    events = [{"n": n} for n in range(3)]
    for event in events:
        frames.text(event, 0, {"type": "status", "n": event["n"]})
    big = {"n": "big"}
    frames.text(big, 0, {"type": "log", "text": "x" * 200})

    # The oldest went; the one over the bytes was sent, never kept.
    again = frames.text(events[0], 0, {"type": "status", "n": "again"})
    assert again[0] == '{"type": "status", "n": "again"}'
    assert frames.text(big, 0, {"type": "log", "text": "y"})[0] == (
        '{"type": "log", "text": "y"}'
    )
    assert len(frames._texts) == 2
    assert frames._bytes == sum(size for _, _, size in frames._texts.values())
