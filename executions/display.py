"""What a snapshot looks like to a person: the one vocabulary and the one set
of formats that the pages, the admin, the terminal and the pages' script
share.

Templates reach this through `executions.templatetags.executions`; the
script gets `vocabulary()` as a JSON blob and mirrors the few formatting
functions (a browser test checks that live and reloaded pages agree).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime

from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from .models import Source

#: Every state a run or a step can be in, as the pages, the admin and the
#: terminal name it (the words are the statuses themselves: one name each).
STATES = (
    "queued",
    "pending",
    "running",
    "stalled",
    "interrupting",
    "interrupted",
    "succeeded",
    "failed",
    "skipped",
    "lost",
)
#: What each state means, for tooltips and the legend.
STATE_HELP = {
    "queued": "waiting for a supervisor to take it",
    "pending": "waits for the steps it comes after",
    "running": "in progress",
    "stalled": "running, but no progress for a while",
    "interrupting": "asked to stop: no new step starts",
    "interrupted": "stopped before the end",
    "succeeded": "done",
    "failed": "stopped by an error",
    "skipped": "never started",
    "lost": "its supervisor stopped heartbeating",
}
#: The states' colours (executions.css has the same as custom properties;
#: the tab's icon is drawn before any stylesheet applies).
STATE_COLOURS = {
    "queued": "#6b7280",
    "pending": "#9ca3af",
    "running": "#2563eb",
    "stalled": "#d97706",
    "interrupting": "#d97706",
    "interrupted": "#c2410c",
    "succeeded": "#15803d",
    "failed": "#dc2626",
    "skipped": "#b8bec8",
    "lost": "#7c3aed",
}
FAVICON = (
    "data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27 "
    "viewBox=%270 0 16 16%27%3E%3Ccircle cx=%278%27 cy=%278%27 r=%277%27 "
    "fill=%27{}%27/%3E%3C/svg%3E"
)
#: The engine's outcome kinds in the states' words: a `complete` outcome is
#: a run that `succeeded`, so the pages say so once.
OUTCOME_STATES = {"complete": "succeeded", "interrupted": "interrupted"}
FINISHED = ("interrupted", "succeeded", "failed", "lost")
#: Ended steps the page may fold away: a failed one stays in sight.
HIDEABLE = ("succeeded", "interrupted", "skipped")
#: Where a request came from, as people call those places.
SOURCES = dict(Source.choices)
#: The interrupt strategies, explained where one is chosen and where it shows.
STRATEGIES = {
    "finish-current": (
        "On interrupt no new step starts; a step in flight runs to its end, "
        "or stops at its own next checkpoint if it has them (a cooperative "
        "step may stop at 5 %)."
    ),
    "poll-next-n": (
        "On interrupt N more steps are still started, then it stops as "
        "finish-current does (N = 0 is finish-current)."
    ),
    "ignore": (
        "An interrupt is recorded but the run goes on to its end; only a "
        "forced interrupt stops it."
    ),
}
FORMAT = "%Y-%m-%d %H:%M:%S"
#: Bulk interrupt results that asked for nothing new.
SETTLED = {
    "already": "already interrupting",
    "finished": "already finished",
    "refused": "refused",
}


def state_of_outcome(kind: str | None) -> str:
    return OUTCOME_STATES.get(kind or "", kind or "")


def favicon(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#2457c5")
    return FAVICON.format(colour.replace("#", "%23"))


def source_label(source: str | None) -> str:
    return SOURCES.get(source or "", source or "")


def strategy_help(strategy: str | None) -> str:
    return STRATEGIES.get((strategy or "").split(":", 1)[0], "")


def parse(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def timestamp(iso: str | None) -> tuple[str, str]:
    """(local time, UTC) texts of an ISO 8601 instant; the pages' script
    rewrites the first in the browser's own zone."""
    moment = parse(iso)
    if moment is None:
        return "", ""
    utc = moment.astimezone(UTC).strftime(FORMAT) + " UTC"
    return timezone.localtime(moment).strftime(FORMAT), utc


def duration(seconds: float) -> str:
    """`0.6s`, `42s`, `1m 05s`, `2h 03m`: tenths only while they matter."""
    if seconds < 10:
        return f"{math.floor(max(0.0, seconds) * 10) / 10:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def seconds_between(started: str | None, finished: str | None) -> float | None:
    if not started:
        return None
    end = parse(finished) if finished else timezone.now()
    return (end - parse(started)).total_seconds()


def elapsed(started: str | None, finished: str | None) -> str:
    seconds = seconds_between(started, finished)
    return "" if seconds is None else duration(seconds)


def progress_text(progress: dict) -> str:
    """`3 / 10` (the step's own units of work) or `1.0 MB / 64.0 MB`."""
    done, total = progress["done"], progress["total"]
    if progress["unit"] == "bytes":
        shown = filesizeformat(done)
        return f"{shown} / {filesizeformat(total)}" if total is not None else shown
    return f"{done} / {total}" if total is not None else f"{done}"


def fraction(step: dict) -> float:
    """How much of a step's work is done, 0 to 1: a succeeded step counts
    whole, a skipped one as nothing, a stopped one as far as it got."""
    if step["status"] == "succeeded":
        return 1.0
    if step["status"] == "skipped":
        return 0.0
    done, total = step["progress"]["done"], step["progress"]["total"]
    if not total or total <= 0:
        return 0.0
    return min(max(done / total, 0.0), 1.0)


def progress_bar(step: dict) -> dict[str, int] | None:
    """`<progress>` value and max; None for an indeterminate bar (a running
    step that does not know its total yet)."""
    done, total = step["progress"]["done"], step["progress"]["total"]
    if total is None:
        if step["status"] in ("running", "stalled"):
            return None
        return {"value": 0, "max": 1}
    if total <= 0:
        return {"value": 1 if step["status"] == "succeeded" else 0, "max": 1}
    return {"value": min(max(done, 0), total), "max": total}


def overall(steps: list[dict]) -> dict:
    """The run as a whole: steps done (succeeded) of all, steps ended and
    foldable (`finished`: not failed), and a percentage of the work that
    counts the running steps' own progress."""
    done = sum(1 for step in steps if step["status"] == "succeeded")
    total = len(steps)
    percent = int(100 * sum(fraction(step) for step in steps) / total) if total else 0
    return {
        "done": done,
        "finished": sum(1 for step in steps if step["status"] in HIDEABLE),
        "total": total,
        "percent": percent,
        "text": f"{done} of {total} steps done · {percent} %",
    }


def bulk_summary(results: dict[str, list[str]], *, force: bool) -> str:
    """What a bulk interrupt did, truthfully: `results` maps an
    `Interruption` value (or `finished`, `refused`) to short IDs.
    "Interrupt requested for 3 executions; 2 already finished." """
    asked = sum(len(ids) for key, ids in results.items() if key not in SETTLED)
    parts = []
    if asked:
        verb = "Forced interrupt" if force else "Interrupt"
        parts.append(f"{verb} requested for {asked} execution{'s' * (asked != 1)}")
    for key, label in SETTLED.items():
        if results.get(key):
            parts.append(f"{len(results[key])} {label}")
    if not parts:
        return "No execution selected: nothing changed."
    return "; ".join(parts) + "."


def vocabulary() -> dict:
    """What the pages' script needs to say things as the server does."""
    return {
        "states": {state: STATE_HELP[state] for state in STATES},
        "outcomes": OUTCOME_STATES,
        "sources": SOURCES,
        "strategies": STRATEGIES,
        "colours": STATE_COLOURS,
        "favicon": FAVICON,
    }


# -- the graph: stages, timeline, layout --------------------------------------


def depths(steps: list[dict]) -> dict[str, int]:
    """Each step's depth in the graph (0 for a step after nothing)."""
    ids = {step["id"] for step in steps}
    waiting = {step["id"]: 0 for step in steps}
    children: dict[str, list[str]] = defaultdict(list)
    for step in steps:
        for dependency in step.get("after", []):
            if dependency in ids:
                waiting[step["id"]] += 1
                children[dependency].append(step["id"])
    depth = {step_id: 0 for step_id, count in waiting.items() if count == 0}
    ready = list(depth)
    for step_id in ready:
        for child in children[step_id]:
            depth[child] = max(depth.get(child, 0), depth[step_id] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return {step["id"]: depth.get(step["id"], 0) for step in steps}


def stages(steps: list[dict]) -> list[list[dict]]:
    """Steps grouped by depth: a stage's steps may run side by side
    (demo.deploy's parallel branches), each after the stages above."""
    depth = depths(steps)
    grouped: list[list[dict]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for step in steps:
        grouped[depth[step["id"]]].append(step)
    return [stage for stage in grouped if stage]


def timeline(snapshot: dict) -> dict:
    """A Gantt chart of the steps: for each, when it became ready (its last
    dependency finished), when it started and when it ended, as percentages
    of the run's span. The gap between ready and started is its queue wait."""
    start = parse(snapshot["started_at"])
    steps = snapshot["steps"]
    if start is None:
        return {"rows": [], "span": ""}
    end = parse(snapshot["finished_at"]) or timezone.now()
    moments = [parse(step["finished_at"]) for step in steps if step["finished_at"]]
    end = max([end, *moments])
    span = max((end - start).total_seconds(), 0.001)
    finished = {step["id"]: parse(step["finished_at"]) for step in steps}

    def at(moment: datetime) -> float:
        return round(100 * max((moment - start).total_seconds(), 0) / span, 2)

    rows = []
    for step in steps:
        began = parse(step["started_at"])
        if began is None:
            rows.append({"step": step, "shown": False})
            continue
        ready = max([start, *(finished.get(d) or began for d in step.get("after", []))])
        ended = parse(step["finished_at"]) or end
        rows.append(
            {
                "step": step,
                "shown": True,
                "ready": at(min(ready, began)),
                "start": at(began),
                "wait_width": round(at(began) - at(min(ready, began)), 2),
                "width": max(round(at(ended) - at(began), 2), 0.3),
                "wait": duration(max((began - ready).total_seconds(), 0)),
                "took": duration((ended - began).total_seconds()),
            }
        )
    return {"rows": rows, "span": duration(span)}


NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 172, 44, 44, 16, 8


def graph(steps: list[dict]) -> dict | None:
    """The step DAG laid out in columns by depth: node boxes and edge
    curves for the template that draws it as SVG. None for a plain chain
    (every step after the one before), which a sentence says better."""
    grouped = stages(steps)
    if all(len(stage) == 1 for stage in grouped):
        return None
    # Each step sits level with the mean of what it comes after, so an edge
    # that skips a column runs along a free row instead of through a node.
    row: dict[str, float] = {}
    for column, stage in enumerate(grouped):

        def wanted(step: dict) -> float:
            parents = [row[d] for d in step.get("after", []) if d in row]
            return sum(parents) / len(parents) if parents else 0.0

        at = -1.0
        for step in sorted(stage, key=wanted) if column else stage:
            at = max(wanted(step), at + 1) if column else at + 1
            row[step["id"]] = at
    place = {
        step["id"]: (
            PAD + depth * (NODE_W + GAP_X),
            PAD + row[step["id"]] * (NODE_H + GAP_Y),
        )
        for depth, stage in enumerate(grouped)
        for step in stage
    }
    height = (max(row.values()) + 1) * (NODE_H + GAP_Y) - GAP_Y
    nodes = [
        {"step": step, "x": place[step["id"]][0], "y": place[step["id"]][1]}
        for step in steps
    ]
    edges = []
    for step in steps:
        x2, y2 = place[step["id"]]
        for dependency in step.get("after", []):
            if dependency not in place:
                continue
            x1, y1 = place[dependency]
            x1, y1, y2c = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
            middle = (x1 + x2) / 2
            edges.append(
                {
                    "from": dependency,
                    "to": step["id"],
                    "d": f"M{x1:g},{y1:g} C{middle:g},{y1:g} {middle:g},{y2c:g} "
                    f"{x2:g},{y2c:g}",
                }
            )
    return {
        "nodes": nodes,
        "edges": edges,
        "width": PAD * 2 + len(grouped) * (NODE_W + GAP_X) - GAP_X,
        "height": round(PAD * 2 + height),
        "node_w": NODE_W,
        "node_h": NODE_H,
    }
