"""The built-in commands: their params, and real runs through the engine and
through the service and runner."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from executions import services
from executions.cmds import CHUNK, DEPLOY_STEP_IDS, MIB, TEMP_PREFIX
from executions.engine import (
    InterruptSignal,
    Outcome,
    OutcomeKind,
    ParamsError,
    Scheduler,
    StepState,
    StepStatus,
    registry,
)
from executions.models import Execution, Source, Status
from executions.runtime.run import RunObserver
from tests.factories import run_here

from .engine.steps import HANG, Events

BIG = 8 * MIB


def params_error(name: str, raw: dict) -> dict[str, str]:
    with pytest.raises(ParamsError) as error:
        registry.get(name).clean_params(raw)
    return error.value.errors


async def run_cmd(
    name: str, raw: dict, **options
) -> tuple[Outcome, dict[str, StepState]]:
    """Run a command through the engine alone: its outcome and step states."""
    outcome, scheduler = await run_scheduler(name, raw, **options)
    return outcome, scheduler.states


async def run_scheduler(name: str, raw: dict, **options) -> tuple[Outcome, Scheduler]:
    cmd = registry.get(name)
    params = cmd.clean_params(raw)
    scheduler = Scheduler(cmd.build(params), cmd.bind(params), **options)
    return await asyncio.wait_for(scheduler.run(), HANG), scheduler


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A source tree: small files around one big enough to interrupt."""
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "big.bin").write_bytes(bytes(range(256)) * (BIG // 256))
    (src / "sub" / "b.txt").write_text("bravo\n" * 100)
    (src / "sub" / "deeper" / "c.txt").write_text("charlie\n")
    return src


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# -- files.sync ------------------------------------------------------------------------


async def test_files_sync_copies_a_tree_with_byte_progress(tree, tmp_path):
    dest = tmp_path / "dest"
    events = Events()

    outcome, _ = await run_cmd(
        "files.sync", {"src": str(tree), "dest": str(dest)}, on_step=events
    )

    total = sum(len(data) for data in files_under(tree).values())
    copy = events.final("copy")
    assert outcome.kind is OutcomeKind.COMPLETE
    assert files_under(dest) == files_under(tree)
    assert (copy.done, copy.total, copy.unit) == (total, total, "bytes")
    assert copy.message == "4 copied, 0 already there"
    assert copy.result == {"copied": 4, "skipped": 0}
    assert events.final("verify").message == "4 files verified"


async def sync_interrupted_in_big_file(src: Path, dest: Path):
    """Run files.sync slowly and interrupt it once the copy step has copied a
    chunk of big.bin; return the outcome, the states, and the copy step's
    state when the interrupt was requested."""
    signal = InterruptSignal()
    seen: list[StepState] = []

    def interrupt(state: StepState) -> None:
        if state.id == "copy" and state.done >= CHUNK and not signal.requested:
            seen.append(state)
            signal.request()

    outcome, states = await run_cmd(
        "files.sync",
        {"src": str(src), "dest": str(dest), "bytes_per_second": 4 * MIB},
        signal=signal,
        on_step=interrupt,
        progress_interval=0.01,
    )
    return outcome, states, seen[0]


async def test_files_sync_interrupted_mid_copy_leaves_no_partial_file(tree, tmp_path):
    dest = tmp_path / "dest"

    outcome, states, copying = await sync_interrupted_in_big_file(tree, dest)

    assert (copying.message, copying.done < BIG) == ("big.bin", True)
    assert outcome.kind is OutcomeKind.INTERRUPTED
    assert outcome.steps_processed == ("scan",)
    assert states["copy"].status is StepStatus.INTERRUPTED
    assert list(dest.rglob(f"{TEMP_PREFIX}*")) == []
    assert files_under(dest) == {"a.txt": b"alpha\n"}


async def test_files_sync_rerun_completes_and_skips_identical_files(tree, tmp_path):
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "b.txt").write_text("stale")
    await sync_interrupted_in_big_file(tree, dest)
    kept = (dest / "a.txt").stat().st_ino

    outcome, states = await run_cmd("files.sync", {"src": str(tree), "dest": str(dest)})

    assert outcome.kind is OutcomeKind.COMPLETE
    assert states["copy"].message == "3 copied, 1 already there"
    # Skipped, not rewritten: a copy is renamed into place as a new file.
    assert (dest / "a.txt").stat().st_ino == kept
    assert files_under(dest) == files_under(tree)


async def test_files_sync_resumed_after_the_scan_copies_from_its_stored_result(
    tree, tmp_path
):
    dest = tmp_path / "dest"
    _, first = await run_scheduler("files.sync", {"src": str(tree), "dest": str(dest)})
    (tree / "late.txt").write_text("not in the scan")
    (dest / "a.txt").unlink()

    outcome, resumed = await run_scheduler(
        "files.sync",
        {"src": str(tree), "dest": str(dest)},
        skip=["scan"],
        results={"scan": first.results["scan"]},
    )

    assert outcome.kind is OutcomeKind.COMPLETE
    assert resumed.results["copy"] == {"copied": 1, "skipped": 3}
    assert "late.txt" not in files_under(dest)


def test_files_sync_refuses_a_missing_src(tmp_path):
    errors = params_error(
        "files.sync", {"src": str(tmp_path / "nowhere"), "dest": str(tmp_path / "d")}
    )

    assert errors == {"src": "must be an existing directory"}


@pytest.mark.parametrize("inside", [".", "copy", "copy/deeper"])
def test_files_sync_refuses_a_dest_inside_src(tree, inside):
    errors = params_error("files.sync", {"src": str(tree), "dest": str(tree / inside)})

    assert errors == {"dest": "must not be inside src"}


def test_files_sync_requires_src_and_dest_and_a_positive_rate():
    errors = params_error("files.sync", {"bytes_per_second": 0})

    assert errors == {
        "src": "a value is required",
        "dest": "a value is required",
        "bytes_per_second": "must be at least 1",
    }


# -- demo.steps ------------------------------------------------------------------------

FAST = {"seconds": 0.01, "ticks": 2}


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        ({"count": 3, "fail_at": 4}, {"fail_at": "must be a step number from 1 to 3"}),
        ({"count": 3, "fail_at": 0}, {"fail_at": "must be a step number from 1 to 3"}),
        ({"count": 0}, {"count": "must be at least 1"}),
        ({"count": "1001"}, {"count": "must be at most 1000"}),
        (
            {"ticks": 0, "seconds": -1},
            {"ticks": "must be at least 1", "seconds": "must be at least 0"},
        ),
    ],
)
def test_demo_steps_refuses_bad_params(raw, errors):
    assert params_error("demo.steps", raw) == errors


async def test_demo_steps_runs_a_chain_to_the_end():
    events = Events()

    outcome, _ = await run_cmd("demo.steps", {"count": 3, **FAST}, on_step=events)

    assert outcome.steps_processed == ("step-1", "step-2", "step-3")
    assert (events.final("step-3").done, events.final("step-3").total) == (2, 2)
    assert events.final("step-3").message == "tick 2 of 2"


async def test_demo_steps_fail_at_fails_that_step():
    outcome, _ = await run_cmd("demo.steps", {"count": 3, "fail_at": 2, **FAST})

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.steps_processed == ("step-1",)
    assert outcome.errors == {
        "step-2": "RuntimeError: step 2 failed as asked (fail_at=2)"
    }


@pytest.mark.parametrize(
    ("cooperative", "status"),
    [(True, StepStatus.INTERRUPTED), (False, StepStatus.SUCCEEDED)],
)
async def test_demo_steps_interrupted_in_a_step(cooperative, status):
    signal = InterruptSignal()

    def interrupt_in_step_1(state: StepState) -> None:
        if state.id == "step-1" and state.done >= 1:
            signal.request()

    _, states = await run_cmd(
        "demo.steps",
        {"count": 2, "seconds": 0.5, "ticks": 10, "cooperative": cooperative},
        signal=signal,
        on_step=interrupt_in_step_1,
        progress_interval=0.01,
    )

    assert states["step-1"].status is status
    assert states["step-2"].status is StepStatus.SKIPPED


# -- demo.deploy -----------------------------------------------------------------------


def test_demo_deploy_refuses_an_unknown_fail_step():
    errors = params_error("demo.deploy", {"fail_step": "s3_everything"})

    assert errors == {"fail_step": f"must be one of: {', '.join(DEPLOY_STEP_IDS)}"}


def test_demo_deploy_offers_exactly_its_steps_to_fail():
    cmd = registry.get("demo.deploy")

    fail_step = next(param for param in cmd.params if param.name == "fail_step")

    assert fail_step.choices == tuple(step.id for step in cmd.build({}))


async def test_demo_deploy_runs_its_branches_side_by_side():
    events = Events()

    outcome, _ = await run_cmd("demo.deploy", {"seconds": 0.02}, on_step=events)

    bucket, policy = events.final("s3_bucket"), events.final("iam_policy")
    download = events.final("app_download")
    assert outcome.steps_processed == DEPLOY_STEP_IDS
    assert bucket.started_at < policy.finished_at
    assert policy.started_at < bucket.finished_at
    assert (download.done, download.unit) == (64 * MIB, "bytes")


async def test_demo_deploy_fail_step_fails_and_stops_the_rest():
    outcome, _ = await run_cmd(
        "demo.deploy", {"seconds": 0.02, "fail_step": "iam_role"}
    )

    assert outcome.errors == {
        "iam_role": "RuntimeError: iam_role failed as asked (fail_step)"
    }
    assert outcome.steps_not_processed == ("iam_role", "instance_profile", "s3_object")


# -- through the service and the runner ------------------------------------------------


@database_sync_to_async
def start(cmd: str, params: dict) -> Execution:
    return services.start_execution(
        cmd, params, source=Source.CLI, dispatch=False
    ).execution


@database_sync_to_async
def load(execution_id) -> Execution:
    return Execution.objects.get(pk=execution_id)


class InterruptOnceCopying(RunObserver):
    def __init__(self, signal: InterruptSignal) -> None:
        self.signal = signal

    def step(self, step: dict) -> None:
        if step["id"] == "copy" and step["progress"]["done"] >= CHUNK:
            self.signal.request()


@pytest.mark.django_db(transaction=True)
async def test_demo_steps_through_the_runner_succeeds_in_the_database():
    execution = await start("demo.steps", {"count": 2, **FAST})

    await asyncio.wait_for(run_here(execution.pk), HANG)

    row = await load(execution.pk)
    assert row.status == Status.SUCCEEDED
    assert row.outcome == {
        "kind": "complete",
        "steps_processed": ["step-1", "step-2"],
        "steps_not_processed": [],
        "errors": {},
    }
    assert [(s["status"], s["progress"]["done"]) for s in row.steps] == [
        ("succeeded", 2),
        ("succeeded", 2),
    ]


@pytest.mark.django_db(transaction=True)
async def test_files_sync_through_the_runner_is_interrupted_in_the_database(
    tree, tmp_path
):
    dest = tmp_path / "dest"
    params = {"src": str(tree), "dest": str(dest), "bytes_per_second": 4 * MIB}
    execution = await start("files.sync", params)
    signal = InterruptSignal()
    await asyncio.wait_for(
        run_here(execution.pk, signal=signal, observers=[InterruptOnceCopying(signal)]),
        HANG,
    )

    row = await load(execution.pk)
    assert row.status == Status.INTERRUPTED
    assert row.outcome["kind"] == "interrupted"
    assert row.outcome["steps_processed"] == ["scan"]
    assert [s["status"] for s in row.steps] == ["succeeded", "interrupted", "skipped"]
    assert list(dest.rglob(f"{TEMP_PREFIX}*")) == []
    assert "big.bin" not in files_under(dest)
