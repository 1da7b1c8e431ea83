"""The built-in commands: `demo.steps`, `demo.deploy` and `files.sync`."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .conf import conf
from .engine import Cmd, Param, ParamsError, Step, StepContext, register

# -- demo.steps ------------------------------------------------------------------


def _demo_step(number: int):
    async def run(ctx: StepContext) -> None:
        params = ctx.params
        ticks = params["ticks"]
        pause = params["seconds"] / ticks
        for tick in range(1, ticks + 1):
            if params["cooperative"]:
                ctx.checkpoint()
            await asyncio.sleep(pause)
            ctx.progress.advance()
            ctx.progress.message = f"tick {tick} of {ticks}"
            if params["fail_at"] == number and tick * 2 >= ticks:
                raise RuntimeError(f"step {number} failed as asked (fail_at={number})")

    return run


def _demo_steps(params: dict[str, Any]) -> list[Step]:
    count = params["count"]
    return [
        Step(
            id=f"step-{number}",
            title=f"Step {number} of {count}",
            func=_demo_step(number),
            after=(f"step-{number - 1}",) if number > 1 else (),
            total=params["ticks"],
        )
        for number in range(1, count + 1)
    ]


def _check_demo_steps(params: dict[str, Any]) -> None:
    fail_at = params["fail_at"]
    if fail_at is not None and not 1 <= fail_at <= params["count"]:
        raise ParamsError(
            {"fail_at": f"must be a step number from 1 to {params['count']}"}
        )


demo_steps = register(
    Cmd(
        name="demo.steps",
        title="Demo: a chain of steps",
        description="Runs `count` steps one after another, each ticking for "
        "`seconds`. Use it to watch progress and try interrupts.",
        params=(
            Param("count", "int", 5, "how many steps", min=1, max=1000),
            Param("seconds", "float", 1.0, "seconds per step", min=0, max=3600),
            Param("ticks", "int", 10, "progress ticks per step", min=1, max=100000),
            Param(
                "fail_at",
                "int",
                None,
                "make this step number fail",
                nullable=True,
            ),
            Param(
                "cooperative",
                "bool",
                True,
                "steps stop at their own checkpoints when interrupted",
            ),
        ),
        steps=_demo_steps,
        validate=_check_demo_steps,
    )
)

# -- demo.deploy -------------------------------------------------------------------

MIB = 1024 * 1024

#: (id, title, after, unit, total) -- the shape of Peace's envman example.
DEPLOY_GRAPH = (
    ("app_download", "Download the application", (), "bytes", 64 * MIB),
    ("s3_bucket", "Create the bucket", ("app_download",), "steps", 4),
    ("iam_policy", "Create the IAM policy", ("app_download",), "steps", 3),
    ("iam_role", "Create the IAM role", ("iam_policy",), "steps", 3),
    ("instance_profile", "Create the instance profile", ("iam_role",), "steps", 2),
    (
        "s3_object",
        "Upload the application",
        ("s3_bucket", "instance_profile"),
        "bytes",
        64 * MIB,
    ),
)
DEPLOY_STEP_IDS = tuple(step_id for step_id, *_ in DEPLOY_GRAPH)


def _deploy_step(step_id: str, total: int):
    async def run(ctx: StepContext) -> None:
        params = ctx.params
        ticks = 20
        pause = params["seconds"] / ticks
        for tick in range(1, ticks + 1):
            if params["cooperative"]:
                ctx.checkpoint()
            await asyncio.sleep(pause)
            ctx.progress.set(total * tick // ticks)
            ctx.progress.message = f"{step_id}: {100 * tick // ticks}%"
            if params["fail_step"] == step_id and tick == ticks // 2:
                raise RuntimeError(f"{step_id} failed as asked (fail_step)")

    return run


def _check_deploy(params: dict[str, Any]) -> None:
    if params["fail_step"] is not None and params["fail_step"] not in DEPLOY_STEP_IDS:
        raise ParamsError(
            {"fail_step": f"must be one of: {', '.join(DEPLOY_STEP_IDS)}"}
        )


demo_deploy = register(
    Cmd(
        name="demo.deploy",
        title="Demo: deploy an application",
        description="Download, then the bucket beside the policy, role and "
        "profile, then upload: parallel branches with byte and step progress.",
        params=(
            Param("seconds", "float", 2.0, "seconds per step", min=0, max=3600),
            Param(
                "fail_step",
                "str",
                None,
                f"make this step fail: {', '.join(DEPLOY_STEP_IDS)}",
                nullable=True,
            ),
            Param(
                "cooperative",
                "bool",
                True,
                "steps stop at their own checkpoints when interrupted",
            ),
        ),
        steps=[
            Step(step_id, _deploy_step(step_id, total), title, after, unit, total)
            for step_id, title, after, unit, total in DEPLOY_GRAPH
        ],
        validate=_check_deploy,
    )
)

# -- files.sync --------------------------------------------------------------------

CHUNK = MIB
TEMP_PREFIX = ".peace-partial-"


def _same(source: Path, target: Path) -> bool:
    """Identical for a rerun's purposes: same size and modification time (we
    copy the time with the bytes), as rsync decides by default."""
    try:
        a, b = source.stat(), target.stat()
    except FileNotFoundError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _scan(ctx: StepContext) -> None:
    src = Path(ctx.params["src"])
    files: list[tuple[Path, int]] = []
    for directory, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            ctx.checkpoint()
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            files.append((path.relative_to(src), path.stat().st_size))
            ctx.progress.advance()
    ctx.progress.total = len(files)
    ctx.progress.message = f"{len(files)} files, {sum(s for _, s in files)} bytes"
    ctx.resources["files"] = files


def _copy_one(ctx: StepContext, source: Path, target: Path) -> None:
    """Write to a temporary name beside the target, then rename: a reader (or
    an interrupt) never sees a half-written file under the real name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{target.name}")
    limit = ctx.params["bytes_per_second"]
    started = time.monotonic()
    copied = 0
    try:
        with source.open("rb") as reader, temp.open("wb") as writer:
            while chunk := reader.read(CHUNK):
                ctx.checkpoint()
                writer.write(chunk)
                copied += len(chunk)
                ctx.progress.advance(len(chunk))
                if limit:
                    ahead = copied / limit - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(source, temp)
        os.replace(temp, target)
    except BaseException:
        ctx.progress.advance(-copied)
        temp.unlink(missing_ok=True)
        raise


def _refuse_escape(dest: Path, target: Path) -> None:
    """A directory under dest that is a symlink must not carry a write
    outside dest (out of the allowed roots, for a web user)."""
    root = dest.resolve()
    parent = target.parent
    while not parent.exists():
        if parent == dest:
            # dest does not exist yet: the copy creates real directories.
            return
        parent = parent.parent
    resolved = parent.resolve()
    if resolved != root and root not in resolved.parents:
        raise RuntimeError(f"{target} leads outside {dest} through a symlink")


def _copy(ctx: StepContext) -> None:
    src, dest = Path(ctx.params["src"]), Path(ctx.params["dest"])
    files = ctx.resources["files"]
    ctx.progress.total = sum(size for _, size in files)
    skipped = 0
    for relative, size in files:
        ctx.checkpoint()
        source, target = src / relative, dest / relative
        if _same(source, target):
            skipped += 1
            ctx.progress.advance(size)
            continue
        ctx.progress.message = str(relative)
        _refuse_escape(dest, target)
        _copy_one(ctx, source, target)
    ctx.progress.message = f"{len(files) - skipped} copied, {skipped} already there"


def _verify(ctx: StepContext) -> None:
    src, dest = Path(ctx.params["src"]), Path(ctx.params["dest"])
    files = ctx.resources["files"]
    ctx.progress.total = len(files)
    for relative, _ in files:
        ctx.checkpoint()
        if not _same(src / relative, dest / relative):
            raise RuntimeError(f"{relative} differs after the copy")
        ctx.progress.advance()
    ctx.progress.message = f"{len(files)} files verified"


def _check_sync(params: dict[str, Any]) -> None:
    src = Path(params["src"])
    dest = Path(params["dest"])
    if not src.is_dir():
        raise ParamsError({"src": "must be an existing directory"})
    resolved_src, resolved_dest = src.resolve(), dest.resolve()
    if resolved_dest == resolved_src or resolved_src in resolved_dest.parents:
        raise ParamsError({"dest": "must not be inside src"})


def _within_roots(params: dict[str, Any]) -> None:
    """From the web, the API or the admin, src and dest must lie inside
    EXECUTIONS_FILES_ROOTS once every symlink and `..` is resolved."""
    roots = [Path(root).resolve() for root in conf.FILES_ROOTS]
    if not roots:
        raise ParamsError(
            {"src": "files.sync is not allowed here: no EXECUTIONS_FILES_ROOTS"}
        )
    errors = {}
    for name in ("src", "dest"):
        path = Path(params[name]).resolve()
        if not any(path == root or root in path.parents for root in roots):
            errors[name] = "must be inside one of the allowed roots"
    if errors:
        raise ParamsError(errors)


files_sync = register(
    Cmd(
        name="files.sync",
        title="Sync a directory tree",
        description="Copies src to dest with byte progress. Each file is "
        "written to a temporary name and renamed, so an interrupt never leaves "
        "a half-written file; a rerun skips files already identical.",
        params=(
            Param("src", "str", help="the directory to copy from"),
            Param("dest", "str", help="the directory to copy to"),
            Param(
                "bytes_per_second",
                "int",
                None,
                "limit the copy rate (bytes per second)",
                min=1,
                nullable=True,
            ),
        ),
        steps=[
            Step("scan", _scan, "Scan the source", unit="steps"),
            Step("copy", _copy, "Copy the files", after=("scan",), unit="bytes"),
            Step("verify", _verify, "Verify the copy", after=("copy",)),
        ],
        validate=_check_sync,
        restrict=_within_roots,
    )
)
