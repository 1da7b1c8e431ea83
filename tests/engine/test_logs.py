"""Step logs (executions/engine/logs.py): each step's logging records,
prints and stderr in its own log, the run-level log, the rate cap at the
source, and a failed step's traceback."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading

from executions.engine import Scheduler, Step, StepStatus
from executions.engine import logs as step_logs
from executions.engine.logs import CLIPPED, LINE_CHARS, LogSink

from .steps import HANG, Events, Gate, gated, run

step_logger = logging.getLogger("tests.engine.a_step")


class Logs:
    """An `on_log` listener that keeps every batch."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.dropped = 0
        self.batches = 0

    def __call__(self, lines: list[dict], dropped: int) -> None:
        self.lines += lines
        self.dropped += dropped
        self.batches += 1

    def of(self, step_id: str | None) -> list[tuple[str, str]]:
        return [(ln["level"], ln["text"]) for ln in self.lines if ln["step"] == step_id]


async def test_scheduler_logs_an_async_steps_prints_stderr_and_records():
    logs = Logs()

    async def talk(ctx):
        print("to stdout")
        print("to stderr", file=sys.stderr)
        step_logger.warning("a %s record", "warning")
        ctx.log.debug("kept whatever the logging config says")

    await run([Step("a", talk)], on_log=logs)

    assert logs.of("a") == [
        ("stdout", "to stdout"),
        ("stderr", "to stderr"),
        ("warning", "tests.engine.a_step: a warning record"),
        ("debug", "kept whatever the logging config says"),
    ]


async def test_scheduler_logs_a_sync_steps_output_from_its_thread():
    logs = Logs()

    def talk(ctx):
        print("from a thread")
        step_logger.error("an error")

    await run([Step("a", talk)], on_log=logs)

    assert logs.of("a") == [
        ("stdout", "from a thread"),
        ("error", "tests.engine.a_step: an error"),
    ]


async def test_scheduler_keeps_concurrent_steps_lines_apart():
    # Both steps are in flight at once and print in turn.
    logs = Logs()
    turns = [asyncio.Event() for _ in range(4)]

    def speaker(step_id, mine):
        async def speak(ctx):
            for turn in mine:
                await asyncio.wait_for(turns[turn].wait(), HANG)
                print(f"{step_id} {turn}")
                if turn + 1 < len(turns):
                    turns[turn + 1].set()

        return Step(step_id, speak)

    turns[0].set()
    await run([speaker("a", [0, 2]), speaker("b", [1, 3])], on_log=logs)

    assert logs.of("a") == [("stdout", "a 0"), ("stdout", "a 2")]
    assert logs.of("b") == [("stdout", "b 1"), ("stdout", "b 3")]


async def test_scheduler_ends_a_partial_line_with_its_step():
    logs = Logs()

    async def talk(ctx):
        print("no newline", end="")
        sys.stdout.write("half ")
        sys.stdout.write("and half\nlast")

    await run([Step("a", talk)], on_log=logs)

    assert logs.of("a") == [
        ("stdout", "no newlinehalf and half"),
        ("stdout", "last"),
    ]


async def test_scheduler_logs_a_stray_thread_at_run_level_with_fallback():
    logs = Logs()

    def talk(ctx):
        # A thread the step starts has a context of its own: no step route.
        thread = threading.Thread(target=print, args=("from a stray thread",))
        thread.start()
        thread.join(HANG)

    await run([Step("a", talk)], on_log=logs, log_fallback=True)

    assert logs.of(None) == [("stdout", "from a stray thread")]
    assert logs.of("a") == []


async def test_scheduler_restores_stdout_and_leaves_other_output_alone(capsys):
    logs = Logs()
    gate = Gate()
    stdout = sys.stdout
    scheduler = Scheduler([gated("a", gate)], on_log=logs)
    task = asyncio.ensure_future(scheduler.run())
    await gate.wait_started()

    print("the caller's own line")
    gate.open()
    await asyncio.wait_for(task, HANG)

    assert sys.stdout is stdout
    assert capsys.readouterr().out == "the caller's own line\n"
    assert logs.lines == []


async def test_scheduler_caps_a_million_line_flood_at_the_source():
    logs = Logs()

    def flood(ctx):
        for number in range(1_000_000):
            print(number)

    outcome_states = Events()
    await asyncio.wait_for(
        Scheduler(
            [Step("a", flood)],
            on_log=logs,
            on_step=outcome_states,
            log_rate=0,
            log_burst=100,
        ).run(),
        60,
    )

    assert outcome_states.final("a").status is StepStatus.SUCCEEDED
    assert [text for _, text in logs.of("a")] == [str(n) for n in range(100)]
    assert logs.dropped == 1_000_000 - 100


async def test_scheduler_formats_no_line_past_the_cap(monkeypatch):
    """A flood past the rate cap costs its step no formatting: the cap is
    asked before a `logging` record or a `ctx.log` line is made into text."""
    formatted = []

    class Counted:
        def __str__(self) -> str:
            formatted.append("ctx.log")
            return "counted"

    def format(handler, record):
        formatted.append("logging")
        return record.getMessage()

    monkeypatch.setattr(step_logs._Handler, "format", format)
    logs = Logs()

    def flood(ctx):
        for _ in range(5):
            step_logger.warning("%s", "record")
            ctx.log.info("%s", Counted())

    await run([Step("a", flood)], on_log=logs, log_rate=0, log_burst=3)

    assert formatted == ["logging", "ctx.log", "logging"]
    assert logs.of("a") == [
        ("warning", "record"),
        ("info", "counted"),
        ("warning", "record"),
    ]
    assert logs.dropped == 10 - 3


async def test_scheduler_logs_a_failed_steps_traceback_and_keeps_its_error():
    logs = Logs()
    events = Events()

    def explode(ctx):
        raise ValueError("boom")

    await run([Step("a", explode)], on_log=logs, on_step=events)

    state = events.final("a")
    assert state.error == "ValueError: boom"
    assert state.traceback.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("boom")' in state.traceback
    assert state.traceback.endswith("ValueError: boom")
    assert "scheduler.py" not in state.traceback
    assert logs.of("a") == [("error", state.traceback)]


async def test_scheduler_keeps_a_traceback_over_the_rate():
    logs = Logs()
    events = Events()

    async def explode(ctx):
        print("this one is over the rate")
        raise KeyError("k")

    await run(
        [Step("a", explode)], on_log=logs, on_step=events, log_rate=0, log_burst=0
    )

    assert logs.of("a") == [("error", events.final("a").traceback)]
    assert logs.dropped == 1


async def test_scheduler_without_on_log_captures_nothing(capsys):
    async def talk(ctx):
        print("plain")
        ctx.log.info("nowhere")

    await run([Step("a", talk)])

    assert capsys.readouterr().out == "plain\n"


def test_log_sink_refills_at_its_rate():
    now = [0.0]
    sink = LogSink(rate=1.0, burst=2, clock=lambda: now[0])

    for text in ("1", "2", "3"):
        sink.write("a", "info", text)
    now[0] = 1.0
    sink.write("a", "info", "4")
    lines, dropped = sink.drain()

    assert [line["text"] for line in lines] == ["1", "2", "4"]
    assert dropped == 1
    assert sink.drain() == ([], 0)


def test_log_sink_admit_takes_a_token_or_counts_the_line_dropped():
    sink = LogSink(rate=0, burst=1)

    first, second = sink.admit(), sink.admit()
    sink.write("a", "info", "admitted", admitted=True)
    sink.write("a", "info", "over the cap")
    lines, dropped = sink.drain()

    assert (first, second) == (True, False)
    assert [line["text"] for line in lines] == ["admitted"]
    assert dropped == 2


def test_log_sink_clips_a_long_line():
    sink = LogSink()

    sink.write("a", "info", "x" * (LINE_CHARS + 10))
    [line], _ = sink.drain()

    assert line["text"] == "x" * LINE_CHARS + CLIPPED


def test_log_sink_gives_at_as_iso_utc():
    sink = LogSink()

    sink.write(None, "info", "hello")
    [line], _ = sink.drain()

    assert line["step"] is None
    assert line["at"].endswith("Z")
