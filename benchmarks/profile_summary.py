"""What a py-spy profile says: its raw collapsed stacks read, each sample
put in one category, and the summary the report prints (benchmarks/profiles.py
takes the profiles; this module only reads them).

A sample is idle when its leaf frame is a known wait (select/epoll, a lock or
a condition, a queue's get, a read from a socket or a pipe, a sleep): py-spy
`--idle` records those too, so that each thread's busy share can be told. A
busy sample goes to the first category found walking from the leaf up: the
library doing the work (the ORM, JSON, the channel layer...) before our own
module that called it; the standard library's frames are passed over, so a
pipe write in executions/runtime/child.py counts as that module's.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

IDLE = "idle / waiting"
#: Leaf functions of the standard library that wait: (file, function) pairs,
#: a function of None meaning any function of that file.
WAITS = (
    ("selectors.py", None),
    ("threading.py", "wait"),
    ("threading.py", "Condition.wait"),
    ("threading.py", "Event.wait"),
    ("threading.py", "Thread._wait_for_tstate_lock"),
    ("threading.py", "Thread.join"),
    ("threading.py", "Semaphore.acquire"),
    ("queue.py", "Queue.get"),
    ("concurrent/futures/thread.py", "_worker"),
    ("socket.py", None),
    ("ssl.py", "SSLSocket.recv_into"),
    ("multiprocessing/connection.py", "_recv"),
    ("multiprocessing/connection.py", "_poll"),
    ("multiprocessing/connection.py", "wait"),
    ("multiprocessing/popen_fork.py", "Popen.poll"),
    ("multiprocessing/forkserver.py", "main"),
    ("multiprocessing/forkserver.py", "read_signed"),
    ("multiprocessing/resource_tracker.py", "main"),
    ("subprocess.py", "Popen._try_wait"),
    ("asyncio/base_events.py", "BaseEventLoop.run_forever"),
    # The benchmark's client, reading its next ID from stdin.
    ("benchmarks/client.py", "main"),
    # The peers' and the other engines' workers' own waits.
    ("kombu/utils/eventio.py", "_epoll.poll"),
    ("billiard/connection.py", "Connection._recv"),
    ("db_worker.py", "Worker.run"),  # django-tasks-db's sleep between polls
)
#: Path prefixes (py-spy's shortened file names) → category; first match of
#: the walk from the leaf wins. Our own packages are named by module below.
OWNERS = (
    ("django/db/", "Django ORM / SQLite"),
    ("sqlite3/", "Django ORM / SQLite"),
    ("psycopg", "Django ORM / SQLite"),
    ("django/template/", "Django templates"),
    ("django/", "Django request handling"),
    ("asgiref/", "asgiref thread hops"),
    ("channels_redis/", "channels / channels_redis / redis-py"),
    ("channels/", "channels / channels_redis / redis-py"),
    ("redis/", "channels / channels_redis / redis-py"),
    ("daphne/", "daphne / Twisted / autobahn framing"),
    ("twisted/", "daphne / Twisted / autobahn framing"),
    ("autobahn/", "daphne / Twisted / autobahn framing"),
    ("txaio/", "daphne / Twisted / autobahn framing"),
    ("json/", "JSON"),
    ("websockets/", "websockets (the benchmark's clients)"),
    ("benchmarks/", "the benchmark's probes and client"),
    ("celery/", "Celery / kombu"),
    ("kombu/", "Celery / kombu"),
)
OURS = ("executions/", "peace_site/")
#: A process with fewer busy samples than this gets its line, not its tables.
FEW = 20
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
RECORD = re.compile(r'^(?P<processes>(?:process \d+:".*?";)*)(?P<thread>thread \(.*)$')


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of a frame as py-spy writes it: `f (path.py:12)`."""
    found = FRAME.match(frame)
    if not found:
        return frame, ""
    return found["function"], found["file"]


def owner(file: str) -> str | None:
    """The category a frame's file belongs to; None for the standard library
    (and for what is not known), which the walk passes over."""
    for prefix in OURS:
        if file.startswith(prefix):
            return "ours: " + file.removesuffix(".py").replace("/", ".")
    for prefix, category in OWNERS:
        if file.startswith(prefix):
            return category
    return None


def is_wait(frame: str) -> bool:
    function, file = parse_frame(frame)
    return any(
        file == name and (wanted is None or function == wanted)
        for name, wanted in WAITS
    )


def classify(frames: list[str]) -> str:
    """One sample's category: IDLE, or where its time goes."""
    if not frames or is_wait(frames[-1]):
        return IDLE
    for frame in reversed(frames):
        found = owner(parse_frame(frame)[1])
        if found:
            return found
    return "other (Python, standard library)"


def leaf(frames: list[str]) -> str:
    """The leaf frame without its line number: the function that was running."""
    function, file = parse_frame(frames[-1])
    return f"{function} ({file})" if file else function


def own_frame(frames: list[str]) -> str | None:
    """Our frame nearest the leaf: the function of ours the time is under."""
    for frame in reversed(frames):
        function, file = parse_frame(frame)
        if file.startswith(OURS):
            return f"{function} ({file})"
    return None


def records(text: str) -> list[tuple[int, str, list[str], int]]:
    """(process kind, thread kind, frames, count) for each line of a raw
    file (`process_kind`, `thread_kind`)."""
    found = []
    pending = ""
    for line in text.splitlines():
        # A command line with a newline in it spans lines: join them.
        pending = f"{pending}\n{line}" if pending else line
        stack, _, count = pending.rpartition(" ")
        matched = RECORD.match(stack) if count.isdigit() else None
        if not matched:
            continue
        pending = ""
        chain = matched["processes"]
        head, *frames = matched["thread"].split(";")
        thread = head.partition("): ")[2]
        found.append((process_kind(chain), thread_kind(thread), frames, int(count)))
    return found


def thread_kind(name: str) -> str:
    """`ThreadPoolExecutor-3_0` → `ThreadPoolExecutor`, `Thread-24 (join)` →
    `Thread (join)`: a pool's threads, and every pool of a kind, together."""
    return re.sub(r"-\d+|_\d+$", "", name) or "short-lived threads"


def process_kind(chain: str) -> int | str:
    """0 for the process py-spy attached to; for one under it (`--subprocesses`
    names each process of the chain), what it is, from its command line and
    its parent's: execution processes are forked from the forkserver."""
    lines = re.split(r'(?:^|";)process \d+:"', chain.removesuffix('";'))[1:]
    if len(lines) <= 1:
        return 0
    last, parent = lines[-1], lines[-2]
    if "resource_tracker" in last:
        return "multiprocessing's resource tracker"
    if "forkserver" in last:
        return "execution processes" if "forkserver" in parent else "the forkserver"
    return "pool" if last == parent else "other processes under it"


def group_name(kind: int | str, root: str) -> str:
    return root if kind == 0 else f"{root}'s pool" if kind == "pool" else kind


def summarise(text: str, root: str, *, top: int = 8) -> dict:
    """Per process group (the process attached to, its forkserver, its
    execution processes): samples, each thread kind's busy share, the busy
    samples' split by category, and the top leaf frames and frames of ours."""
    groups: dict[str, dict] = {}
    for kind, thread, frames, count in records(text):
        name = group_name(kind, root)
        group = groups.setdefault(
            name,
            {
                "samples": 0,
                "threads": Counter(),
                "busy_threads": Counter(),
                "categories": Counter(),
                "leaves": Counter(),
                "ours": Counter(),
            },
        )
        group["samples"] += count
        group["threads"][thread] += count
        category = classify(frames)
        if category == IDLE:
            continue
        group["busy_threads"][thread] += count
        group["categories"][category] += count
        group["leaves"][leaf(frames)] += count
        mine = own_frame(frames)
        if mine:
            group["ours"][mine] += count
    return {
        name: {
            "samples": group["samples"],
            "busy": sum(group["categories"].values()),
            "threads": [
                [thread, total, group["busy_threads"][thread]]
                for thread, total in group["threads"].most_common()
            ],
            "categories": group["categories"].most_common(),
            "leaves": group["leaves"].most_common(top),
            "ours": group["ours"].most_common(top),
        }
        for name, group in sorted(
            groups.items(), key=lambda item: -item[1]["categories"].total()
        )
    }


def summarise_file(path: Path, root: str) -> dict:
    return summarise(path.read_text(errors="replace"), root) if path.exists() else {}


# -- the report ------------------------------------------------------------------


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.0f} %" if total else "–"


def group_markdown(name: str, group: dict) -> list[str]:
    busy = group["busy"]
    threads = ", ".join(
        f"{thread} {_share(active, total)}"
        for thread, total, active in group["threads"][:4]
    )
    lines = [
        f"**{name}**: {group['samples']} samples, {busy} busy "
        f"({_share(busy, group['samples'])}); busy share by thread: {threads}.",
        "",
    ]
    if busy < FEW:
        return lines
    lines += ["| busy samples in | share |", "|---|---|"]
    lines += [f"| {c} | {_share(n, busy)} |" for c, n in group["categories"][:10]]
    lines += ["", "| leaf frame (busy samples) | share |", "|---|---|"]
    lines += [f"| `{frame}` | {_share(n, busy)} |" for frame, n in group["leaves"]]
    if group["ours"]:
        lines += ["", "| our frame nearest the leaf | share of busy |", "|---|---|"]
        lines += [f"| `{frame}` | {_share(n, busy)} |" for frame, n in group["ours"]]
    return lines + [""]


def profile_markdown(profile: dict) -> str:
    """One profile: what ran, what was sampled, and each process's split."""
    lines = [
        f"#### {profile['title']}",
        "",
        "For: " + ("; ".join(profile["targets"]) or "asked for with --profile") + ".",
        "",
        f"Workload: {profile['workload']}.",
        "",
    ]
    for spied in profile["processes"]:
        head = (
            (f"*{spied['part']}*: " if spied.get("part") else "")
            + f"py-spy on {spied['name']} (PID {spied['pid']}"
            + (", and the processes under it" if spied.get("subprocesses") else "")
            + f"), {spied['seconds']:g} s at {spied['rate']} Hz"
        )
        if spied.get("cpu") is not None:
            head += (
                f"; its CPU {spied['cpu']:.0f} % of a core"
                + (
                    f", the processes under it {spied['cpu_children']:.0f} %"
                    if spied.get("cpu_children")
                    else ""
                )
                + f"; its threads waited for a CPU {spied['run_queue_ms']:.0f} ms"
                " a second (summed)"
            )
        if spied.get("spy_errors"):
            head += f"; {spied['spy_errors']} stacks py-spy could not read"
        lines += [head + f". Raw stacks: `{spied['raw']}`.", ""]
        if spied.get("error"):
            lines += [f"No profile: {spied['error']}", ""]
        for name, group in spied["groups"].items():
            lines += group_markdown(name, group)
    return "\n".join(lines)
