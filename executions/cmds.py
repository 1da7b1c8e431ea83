"""The built-in commands: `demo.steps`, `demo.deploy`, `demo.logs` and
`files.sync`."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Literal, get_args

from .conf import conf
from .engine import Between, Ge, Params, ParamsError, Step, StepContext, command

# -- demo.steps ------------------------------------------------------------------


async def _tick(ctx: StepContext, number: int) -> None:
    params = ctx.params
    pause = params.seconds / params.ticks
    for tick in range(1, params.ticks + 1):
        if params.cooperative:
            ctx.checkpoint()
        await asyncio.sleep(pause)
        ctx.progress.advance()
        ctx.progress.message = f"tick {tick} of {params.ticks}"
        if params.fail_at == number and tick * 2 >= params.ticks:
            raise RuntimeError(f"step {number} failed as asked (fail_at={number})")


def _chain(params: Params) -> list[Step]:
    """`count` steps, each after the one before: a graph made from the params."""
    return [
        Step(
            id=f"step-{number}",
            title=f"Step {number} of {params.count}",
            func=functools.partial(_tick, number=number),
            after=(f"step-{number - 1}",) if number > 1 else (),
            total=params.ticks,
        )
        for number in range(1, params.count + 1)
    ]


Cooperative = Annotated[bool, "steps stop at their own checkpoints when interrupted"]


@command("demo.steps", title="Demo: a chain of steps", steps=_chain)
def demo_steps(
    count: Annotated[int, Between(1, 1000), "how many steps"] = 5,
    seconds: Annotated[float, Between(0, 3600), "seconds per step"] = 1.0,
    ticks: Annotated[int, Between(1, 100000), "progress ticks per step"] = 10,
    fail_at: Annotated[int | None, "make this step number fail"] = None,
    cooperative: Cooperative = True,
) -> None:
    """Runs `count` steps one after another, each ticking for `seconds`. Use
    it to watch progress and try interrupts."""
    if fail_at is not None and not 1 <= fail_at <= count:
        raise ParamsError({"fail_at": f"must be a step number from 1 to {count}"})


# -- demo.deploy -------------------------------------------------------------------

MIB = 1024 * 1024

DeployStepId = Literal[
    "app_download",
    "s3_bucket",
    "iam_policy",
    "iam_role",
    "instance_profile",
    "s3_object",
]
DEPLOY_STEP_IDS: tuple[str, ...] = get_args(DeployStepId)

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


async def _deploy(ctx: StepContext, total: int) -> None:
    params = ctx.params
    ticks = 20
    pause = params.seconds / ticks
    for tick in range(1, ticks + 1):
        if params.cooperative:
            ctx.checkpoint()
        await asyncio.sleep(pause)
        ctx.progress.set(total * tick // ticks)
        ctx.progress.message = f"{ctx.step_id}: {100 * tick // ticks}%"
        if params.fail_step == ctx.step_id and tick == ticks // 2:
            raise RuntimeError(f"{ctx.step_id} failed as asked (fail_step)")


@command(
    "demo.deploy",
    title="Demo: deploy an application",
    # Six steps that differ only in their shape: a table reads better here
    # than six decorated functions.
    steps=[
        Step(
            step_id, functools.partial(_deploy, total=total), title, after, unit, total
        )
        for step_id, title, after, unit, total in DEPLOY_GRAPH
    ],
)
def demo_deploy(
    seconds: Annotated[float, Between(0, 3600), "seconds per step"] = 2.0,
    fail_step: Annotated[DeployStepId | None, "make this step fail"] = None,
    cooperative: Cooperative = True,
) -> None:
    """Download, then the bucket beside the policy, role and profile, then
    upload: parallel branches with byte and step progress."""


# -- demo.logs ---------------------------------------------------------------------

demo_logger = logging.getLogger("demo.logs")


@command("demo.logs", title="Demo: a build that logs")
def demo_logs(
    lines: Annotated[int, Between(0, 1_000_000), "lines the first step prints"] = 20,
    seconds: Annotated[float, Between(0, 3600), "seconds the build's child runs"] = 2,
    fail: Annotated[
        Literal["child", "step"] | None,
        "make the build's child exit non-zero, or the last step raise",
    ] = None,
) -> None:
    """Prints, logs and runs a child process (`sleep`): use it to watch step
    logs, and to see a forced interrupt stop a subprocess."""


@demo_logs.step(title="Prepare (prints its lines)")
def prepare(ctx: StepContext) -> None:
    for number in range(1, ctx.params.lines + 1):
        print(f"preparing {number} of {ctx.params.lines}")
    print("prepare writes to stderr too", file=sys.stderr)
    demo_logger.warning("a logging record from prepare")


@demo_logs.step(title="Build (a child process)", after=[prepare])
async def build(ctx: StepContext) -> None:
    # `exec`: the pid the child prints is that of `sleep` itself.
    script = 'echo "child $$ running"; exec sleep "$1"'
    if ctx.params.fail == "child":
        script = 'echo "child $$ running"; echo "the build broke" >&2; exit 3'
    await ctx.run(["sh", "-c", script, "sh", str(ctx.params.seconds)])
    ctx.log.info("the child finished")


@demo_logs.step(title="Report", after=[build])
def report(ctx: StepContext) -> None:
    if ctx.params.fail == "step":
        raise RuntimeError("the report failed as asked (fail=step)")
    ctx.log.info("all done")


# -- files.sync --------------------------------------------------------------------

CHUNK = MIB
TEMP_PREFIX = ".peace-partial-"


def _roots() -> list[Path]:
    return [Path(root).resolve() for root in conf.FILES_ROOTS]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _within_roots(params: Params) -> None:
    """From the web, the API or the admin, src and dest must lie inside
    EXECUTIONS_FILES_ROOTS once every symlink and `..` is resolved."""
    roots = _roots()
    if not roots:
        raise ParamsError(
            {"src": "files.sync is not allowed here: no EXECUTIONS_FILES_ROOTS"}
        )
    errors = {
        name: "must be inside one of the allowed roots"
        for name in ("src", "dest")
        if not _inside(Path(params[name]).resolve(), roots)
    }
    if errors:
        raise ParamsError(errors)


@command("files.sync", title="Sync a directory tree", restrict=_within_roots)
def files_sync(
    src: Annotated[str, "the directory to copy from"],
    dest: Annotated[str, "the directory to copy to"],
    bytes_per_second: Annotated[
        int | None, Ge(1), "limit the copy rate (bytes per second)"
    ] = None,
) -> None:
    """Copies src to dest with byte progress. Each file is written to a
    temporary name and renamed, so an interrupt never leaves a half-written
    file; a rerun skips files already identical."""
    if not Path(src).is_dir():
        raise ParamsError({"src": "must be an existing directory"})
    resolved_src, resolved_dest = Path(src).resolve(), Path(dest).resolve()
    if resolved_dest == resolved_src or resolved_src in resolved_dest.parents:
        raise ParamsError({"dest": "must not be inside src"})


def _same(source: Path, target: Path) -> bool:
    """Identical for a rerun's purposes: same size and modification time (we
    copy the time with the bytes), as rsync decides by default."""
    try:
        a, b = source.stat(), target.stat()
    except FileNotFoundError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _confined(ctx: StepContext, path: Path, what: str) -> Path:
    """The real path of `path`, refused if the run came from a shared door
    and it now lies outside the allowed roots. Checked at the moment of use,
    not only at start: a queued run's dest may have become a symlink since."""
    real = path.resolve()
    if ctx.restricted and not _inside(real, _roots()):
        raise PermissionError(
            f"{what} {path} is outside the allowed roots (EXECUTIONS_FILES_ROOTS)"
            + (f": it leads to {real}" if real != path else "")
        )
    return real


@files_sync.step(title="Scan the source")
def scan(ctx: StepContext) -> list[list]:
    """[relative path, size] of each regular file under src, for the copy."""
    src = _confined(ctx, Path(ctx.params.src), "src")
    files: list[list] = []
    for directory, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            ctx.checkpoint()
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            files.append([str(path.relative_to(src)), path.stat().st_size])
            ctx.progress.advance()
    ctx.progress.total = len(files)
    ctx.progress.message = f"{len(files)} files, {sum(s for _, s in files)} bytes"
    return files


def _directory_for(ctx: StepContext, dest: Path, target: Path) -> Path:
    """The real directory `target` is to be written in, made if need be.

    A directory under dest that is a symlink must not carry a write outside
    dest, and from a shared door nothing may land outside the roots: checked
    on the nearest directory that exists before anything is made in it, then
    on the one the file goes into."""

    def check(directory: Path) -> Path:
        real = _confined(ctx, directory, "dest")
        if dest in directory.parents:
            root = dest.resolve()
            if real != root and root not in real.parents:
                raise RuntimeError(f"{target} leads outside {dest} through a symlink")
        return real

    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    check(existing)
    target.parent.mkdir(parents=True, exist_ok=True)
    return check(target.parent)


def _copy_one(ctx: StepContext, source: Path, target: Path, directory: Path) -> None:
    """Write to a temporary name beside the target, then rename: a reader (or
    an interrupt) never sees a half-written file under the real name."""
    final = directory / target.name
    temp = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{target.name}"
    limit = ctx.params.bytes_per_second
    started = time.monotonic()
    copied = 0
    try:
        with source.open("rb") as reader:
            # O_EXCL | O_NOFOLLOW: never write through a symlink planted at
            # the temporary name.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with open(os.open(temp, flags, 0o644), "wb") as writer:
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
        os.replace(temp, final)
    except BaseException:
        ctx.progress.advance(-copied)
        temp.unlink(missing_ok=True)
        raise


@files_sync.step(title="Copy the files", unit="bytes")
def copy(ctx: StepContext, scan: list[list]) -> dict[str, int]:
    src, dest = Path(ctx.params.src), Path(ctx.params.dest)
    ctx.progress.total = sum(size for _, size in scan)
    skipped = 0
    for relative, size in scan:
        ctx.checkpoint()
        source, target = src / relative, dest / relative
        if _same(source, target):
            skipped += 1
            ctx.progress.advance(size)
            continue
        ctx.progress.message = relative
        _confined(ctx, source, "src")
        _copy_one(ctx, source, target, _directory_for(ctx, dest, target))
    copied = len(scan) - skipped
    ctx.progress.message = f"{copied} copied, {skipped} already there"
    return {"copied": copied, "skipped": skipped}


@files_sync.step(title="Verify the copy", after=[copy])
def verify(ctx: StepContext, scan: list[list]) -> None:
    src, dest = Path(ctx.params.src), Path(ctx.params.dest)
    ctx.progress.total = len(scan)
    for relative, _ in scan:
        ctx.checkpoint()
        if not _same(src / relative, dest / relative):
            raise RuntimeError(f"{relative} differs after the copy")
        ctx.progress.advance()
    ctx.progress.message = f"{len(scan)} files verified"
