"""The profiling phase's recipes: for each kind of missed target, its own
workload, built from the scenario's code, run on a site of its own while
py-spy records the processes that target's time goes through
(benchmarks/profiles.py runs them; RECIPES maps target labels to them).

Each workload sets its site up and warms it (one sample through) before the
window opens, then repeats the scenario's sample until py-spy is done, and
says what it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from benchmarks import crowd, engines, interrupts, runtime
from benchmarks import scale as scale_module
from benchmarks.fanout import Watchers
from benchmarks.profiles import Sampler, Target
from benchmarks.stack import Context, Ended, Site, desync, site

Workload = Callable[[Context, Sampler, list[str]], Awaitable[str]]
SAMPLE = (
    "each its own run, started through the API, interrupted 10–30 ms after "
    "its first step runs, seen `interrupted` by a watcher; the list page open"
)


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    #: Regular expressions, searched in the targets' labels (report.targets).
    matches: tuple[str, ...]
    workload: Workload


def worker_pid(server: Site) -> int:
    return next(p.pid for name, p in server.processes.started if "-worker" in name)


def _options(redis: bool, **extra) -> dict:
    return {"redis": True, "workers": 1, **extra} if redis else extra


def _targets(server: Site, redis: bool) -> list[Target]:
    """Where a door's time goes: daphne (the door; in-process also the
    supervisor, with its execution processes), and over Redis the worker
    that supervises, with its execution processes."""
    if not redis:
        return [Target("daphne", server.daphne.pid, subprocesses=True)]
    return [
        Target("daphne", server.daphne.pid),
        Target("worker", worker_pid(server), subprocesses=True),
    ]


def door(name: str, *, redis: bool) -> Workload:
    """Scenario 1's samples through one door (`interrupts.one`)."""

    async def workload(context: Context, sampler: Sampler, labels: list[str]) -> str:
        use = interrupts.DOORS[name]
        async with (
            site(context, f"profile-{sampler.recipe}", **_options(redis)) as server,
            interrupts.listing(server),
        ):
            await interrupts.one(server, use)
            count = 0
            async with sampler.window(_targets(server, redis)) as window:
                while window.open:
                    sample = await interrupts.one(server, use)
                    count += sample is not None
        where = "over Redis, a worker supervising" if redis else "in-process"
        return f"{count} samples of the {name} door, {where} ({SAMPLE})"

    return workload


def engine(name: str, doors: tuple[str, ...]) -> Workload:
    """Scenario 8's samples of one engine (`engines.sample`): runs started
    through the API, each interrupted 10–30 ms after its first step runs,
    through the API or from a long-lived client (`services.request_interrupt`,
    scenario 3's ours), the doors in turn."""

    async def workload(context: Context, sampler: Sampler, labels: list[str]) -> str:
        options = engines.site_options(name)
        async with site(context, f"profile-{sampler.recipe}", **options) as server:
            argv = engines.worker_argv(name)
            if argv:
                server.processes.start(f"profile-{name}-worker", argv, server.env)
            asker = engines.ScriptClient(server)
            try:
                key = await server.start()  # and the worker is up
                await server.wait("running", key, timeout=120)
                await server.stop(key)
                targets = [Target(WORKERS[name], worker_pid(server), True)]
                if "api" in doors:
                    targets.insert(0, Target("daphne", server.daphne.pid))
                if "client" in doors:
                    targets.insert(0, Target("the client", asker.process.pid))
                count = 0
                async with sampler.window(targets) as window:
                    while window.open:
                        await _interrupted(server, asker, doors[count % len(doors)])
                        count += 1
            finally:
                asker.close()
        return (
            f"{count} runs on the {name} engine, started through the API, each "
            "interrupted 10–30 ms after its first step runs: "
            + " and ".join(DOOR_NAMES[door] for door in doors)
            + (" in turn" if len(doors) > 1 else "")
        )

    return workload


WORKERS = {"worker": "worker", "celery": "Celery worker", "tasks": "db_worker"}
DOOR_NAMES = {
    "api": "through the API",
    "client": "by the client's `services.request_interrupt()`",
}


async def _interrupted(server: Site, asker: engines.ScriptClient, door: str) -> None:
    key = await server.start_joined()
    await desync()
    if door == "api":
        with contextlib.suppress(Ended):  # stopped by the runtime itself
            await server.interrupt_api(key)
    else:
        await asyncio.to_thread(asker.ask, key)
    await server.wait("done", key)


def _count(labels: list[str], default: int) -> int:
    found = [int(m[1]) for label in labels if (m := re.match(r"(\d+) ", label))]
    return max(found, default=default)


def scale(*, redis: bool) -> Workload:
    """Scenario 6's top level: that many runs going, each interrupted through
    the API in turn and replaced (`scale.level`'s loop)."""

    async def workload(context: Context, sampler: Sampler, labels: list[str]) -> str:
        count = _count(labels, 50 if context.quick else scale_module.COUNTS[-1])
        slots = {"EXECUTIONS_WORKER_CONCURRENCY": str(count + 5)} if redis else {}
        options = _options(redis, extra_env=slots)
        async with site(context, f"profile-{sampler.recipe}", **options) as server:
            running = deque([await server.start_joined() for _ in range(count)])
            await asyncio.sleep(1.0)
            targets = [Target("daphne", server.daphne.pid)]
            if redis:
                targets.append(Target("worker", worker_pid(server)))
            done = 0
            async with sampler.window(targets) as window:
                while window.open:
                    key = running.popleft()
                    await desync()
                    try:
                        await server.interrupt_api(key)
                        await server.wait("signal", key)
                        done += 1
                    except Ended:
                        pass
                    running.append(await server.start_joined())
                    await server.wait("done", key)
            for key in running:
                await server.stop(key)
        where = "Redis, one worker supervising" if redis else "one daphne"
        return (
            f"{count} runs going ({where}), {done} of them interrupted through "
            "the API in turn, each replaced by a new one"
        )

    return workload


async def watched(context: Context, sampler: Sampler, labels: list[str]) -> str:
    """Scenario 11's crowd: the other runs going, the watchers on one run;
    a steady window, then one from just before the interrupt to after the
    last `finished`."""
    sessions = await asyncio.to_thread(crowd.make_sessions, crowd.WATCHERS)
    async with site(context, "profile-crowd", sends=True) as server:
        others = [await server.start_joined() for _ in range(crowd.OTHER_RUNS)]
        key = await server.start_joined()
        watchers = Watchers()
        path = crowd.watch_path(key)
        await watchers.open(
            crowd.connector(server, path, sessions), crowd.WATCHERS, True
        )
        await asyncio.sleep(crowd.SETTLE)
        targets = [Target("daphne", server.daphne.pid)]
        async with sampler.window(targets, part="steady") as window:
            while window.open:
                await asyncio.sleep(0.1)
        async with sampler.window(targets, part="finished", seconds=2) as window:
            await asyncio.sleep(0.3)  # py-spy attached before the interrupt
            await server.interrupt_api(key)
            await server.wait("done", key)
            await crowd.until_all_finished(watchers)
            while window.open:
                await asyncio.sleep(0.1)
        await watchers.close()
        for other in others:
            await server.stop(other)
    return (
        f"{crowd.OTHER_RUNS} runs going, {crowd.WATCHERS} watchers (a session "
        "each) on one more; steady: its step events to all of them; finished: "
        "from 0.3 s before its interrupt through the API to every watcher's "
        "`finished` and on to the window's end"
    )


async def loaded_api(context: Context, sampler: Sampler, labels: list[str]) -> str:
    """Scenario 7's first target: API round trips beside CPU-heavy runs
    (as benchmarks/profile_api.py, the hand-run tool, does)."""
    async with site(context, "profile-runtime") as server:
        await interrupts.round_trips(server, runtime.API_LIST, 10)
        keys = [
            await server.start(runtime.CPU_HEAVY) for _ in range(runtime.HEAVY_RUNS)
        ]
        for key in keys:
            await server.wait("running", key)
        await asyncio.sleep(1.0)
        count = 0
        async with sampler.window([Target("daphne", server.daphne.pid)]) as window:
            while window.open:
                count += len(await interrupts.round_trips(server, runtime.API_LIST, 5))
        for key in keys:
            await server.stop(key, force=True)
    return (
        f"{count} `GET {runtime.API_LIST}` round trips with {runtime.HEAVY_RUNS} "
        "CPU-heavy runs going"
    )


_RECIPES = (
    Recipe(
        "inprocess-api",
        "The API door, in-process: daphne and its execution processes",
        (
            r"^delivery in-process, API POST",
            r"^API door → signal set vs",
            r"^stopped, seen: in-process: API POST",
            r"^in-process: graceful (api|late) interrupt",
        ),
        door("API POST", redis=False),
    ),
    Recipe(
        "inprocess-websocket",
        "The websocket door, in-process: daphne and its execution processes",
        (
            r"^delivery in-process, websocket message",
            r"^websocket door → signal set \(in-process\)",
            r"^stopped, seen: in-process: websocket message",
        ),
        door("websocket message", redis=False),
    ),
    Recipe(
        "inprocess-admin",
        "The admin action, in-process: daphne and its execution processes",
        (r"^delivery in-process, admin action",),
        door("admin action", redis=False),
    ),
    Recipe(
        "redis-api",
        "The API door over Redis: daphne, and the worker with its executions",
        (
            r"^delivery over Redis, API POST",
            r"^graceful over Redis \(API door\)",
            r"^stopped, seen: Redis: API POST",
            r"^worker: graceful (api|late) interrupt",
        ),
        door("API POST", redis=True),
    ),
    Recipe(
        "redis-websocket",
        "The websocket door over Redis: daphne, and the worker with its executions",
        (
            r"^delivery over Redis, websocket message",
            r"^graceful over Redis \(websocket door\)",
            r"^stopped, seen: Redis: websocket message",
        ),
        door("websocket message", redis=True),
    ),
    Recipe(
        "redis-admin",
        "The admin action over Redis: daphne, and the worker with its executions",
        (r"^delivery over Redis, admin action",),
        door("admin action", redis=True),
    ),
    Recipe(
        "redis-client",
        "request_interrupt() from a long-lived client over Redis: the client "
        "and the worker with its executions",
        (
            r"^graceful over Redis \(request_interrupt\(\) from a process\)",
            r"^worker: graceful client interrupt",
        ),
        engine("worker", ("client",)),
    ),
    Recipe(
        "engine-celery",
        "The Celery engine: daphne, the client, the Celery worker and its pool",
        (r"^celery: ",),
        engine("celery", ("api", "client")),
    ),
    Recipe(
        "engine-tasks",
        "The tasks engine (django-tasks-db): daphne, the client, db_worker",
        (r"^tasks",),
        engine("tasks", ("api", "client")),
    ),
    Recipe(
        "scale",
        "Many concurrent runs in one daphne",
        (r"^\d+ concurrent: delivery p99",),
        scale(redis=False),
    ),
    Recipe(
        "scale-redis",
        "Many concurrent runs over Redis, one worker: daphne and the worker",
        (r"^\d+ concurrent, Redis and a worker: delivery p99",),
        scale(redis=True),
    ),
    Recipe(
        "crowd",
        "A crowd on one run: daphne",
        (r"^\d+ watchers: row terminal", r"^\d+ watchers \+ \d+ runs: daphne's CPU"),
        watched,
    ),
    Recipe(
        "runtime-api",
        "The API beside CPU-heavy runs: daphne",
        (r"^API p50 with \d+ CPU-heavy runs vs idle",),
        loaded_api,
    ),
)
RECIPES = {recipe.name: recipe for recipe in _RECIPES}
#: Missed targets no CPU profile would explain, and why: (pattern, reason).
UNPROFILED = (
    (r"vs \d{4}-\d\d-\d\d$", "it compares the rows above with an earlier run"),
    (r"^memory flat|^resync flood", "it is about memory, not time"),
)


def why_none(label: str) -> str:
    """Why a missed target has no recipe, if it is known."""
    for pattern, reason in UNPROFILED:
        if re.search(pattern, label):
            return reason
    return "no recipe yet (benchmarks/profile_recipes.py)"


def recipe_for(label: str) -> Recipe | None:
    """The recipe whose workload is that target's, if there is one."""
    for recipe in _RECIPES:
        if any(re.search(pattern, label) for pattern in recipe.matches):
            return recipe
    return None
