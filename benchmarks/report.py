"""The report: tables, the targets and the plot, from the raw samples.

`write(...)` fills the part of docs/benchmarks.md between the GENERATED
markers; the prose around it (what the numbers mean, what was fixed) is kept.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import interrupts, peers, progress, scale
from benchmarks.support import summary, table

START = "<!-- GENERATED: python -m benchmarks writes from here -->"
END = "<!-- GENERATED: to here -->"

TITLES = {
    "interrupts_inprocess": "1. Interrupt delivery, in-process (embedded default)",
    "interrupts_redis": "1. Interrupt delivery, over Redis (runner on a worker)",
    "stopped": "2. Interrupt to stopped, seen by a watcher",
    "peers": "3. Peers: Celery and RQ, same machine and Redis",
    "progress": "4. Progress cost",
    "fanout": "5. Fan-out to websocket watchers",
    "scale": "6. Scale: concurrent executions in one server",
    "layers": "Channel layers (benchmarks/layers.py)",
}
ORDER = tuple(TITLES)


def sections(results: dict) -> str:
    parts = []
    for name in ORDER:
        section = results.get(name)
        if section is None:
            continue
        parts.append(f"### {TITLES[name]}\n")
        if name == "progress":
            parts.append(progress.markdown(section))
        elif name == "scale":
            parts.append(scale.markdown(section))
        else:
            parts.append(
                table(
                    section["rows"],
                    floor=section.get("floor"),
                    floors=section.get("floors"),
                )
            )
        if section.get("markdown"):
            parts.append("\n" + section["markdown"])
        if name == "peers":
            parts.append(
                f"\nRQ stop commands lost (horse still alive after 30 s): "
                f"{section.get('rq_lost', 0)}."
            )
        if name == "fanout":
            lost = {k: v for k, v in section.get("missing", {}).items() if v}
            parts.append(
                "\nEvents some watcher never received: "
                + (", ".join(f"{k}: {v}" for k, v in lost.items()) if lost else "none")
                + "."
            )
        parts.append("")
    return "\n".join(parts)


def _rows(results: dict, section: str) -> dict[str, dict]:
    return {
        name: summary(samples)
        for name, samples in results.get(section, {}).get("rows", [])
        if samples
    }


def _check(label: str, value: str, target: str, met: bool) -> str:
    return f"| {label} | {value} | {target} | {'met' if met else '**missed**'} |"


def targets(results: dict) -> str:
    lines = ["| target | measured | wanted | |", "|---|---|---|---|"]
    memory = _rows(results, "interrupts_inprocess")
    redis = _rows(results, "interrupts_redis")
    for door in ("API POST", "websocket message", "admin action"):
        stat = memory.get(f"{door} → signal set")
        if stat:
            lines.append(
                _check(
                    f"delivery in-process, {door}",
                    f"p50 {stat['p50']:.1f} ms, p99 {stat['p99']:.1f} ms",
                    "p50 ≤ 3, p99 ≤ 10",
                    stat["p50"] <= 3 and stat["p99"] <= 10,
                )
            )
    celery = _rows(results, "peers").get(peers.CELERY_TERMINATE)
    for door in ("API POST", "websocket message", "admin action"):
        stat = redis.get(f"{door} → signal set (worker)")
        if stat:
            lines.append(
                _check(
                    f"delivery over Redis, {door}",
                    f"p50 {stat['p50']:.1f} ms, p99 {stat['p99']:.1f} ms",
                    "p50 ≤ 4, p99 ≤ 12",
                    stat["p50"] <= 4 and stat["p99"] <= 12,
                )
            )
    ours_script = _rows(results, "peers").get(peers.OURS_SCRIPT)
    for name, stat in (
        ("request_interrupt() from a process", ours_script),
        ("websocket door", redis.get("websocket message → signal set (worker)")),
        ("API door", redis.get("API POST → signal set (worker)")),
    ):
        if stat and celery:
            lines.append(
                _check(
                    f"graceful over Redis ({name}) vs Celery forced kill",
                    f"p50 {stat['p50']:.1f} vs {celery['p50']:.1f} ms, "
                    f"p99 {stat['p99']:.1f} vs {celery['p99']:.1f} ms",
                    "no slower",
                    stat["p50"] <= celery["p50"] and stat["p99"] <= celery["p99"],
                )
            )
    stopped = _rows(results, "stopped")
    for name in (
        "in-process: API POST → watcher sees",
        "in-process: websocket message → watcher sees",
        "Redis: API POST → watcher sees",
        "Redis: websocket message → watcher sees",
    ):
        stat = stopped.get(name)
        if stat:
            lines.append(
                _check(
                    f"stopped, seen: {name.replace(' → watcher sees', '')}",
                    f"p50 {stat['p50']:.1f} ms, p99 {stat['p99']:.1f} ms",
                    "p50 ≤ 20, p99 ≤ 50",
                    stat["p50"] <= 20 and stat["p99"] <= 50,
                )
            )
    section = results.get("progress")
    if section:
        cost = section["cost_ns"]["advance() in a sync step, run sampling it"]["p50"]
        lines.append(
            _check("cost of advance()", f"{cost:.0f} ns", "≤ 1 µs", cost <= 1000)
        )
        rate = max(run["steady_per_second"] for run in section["runs"].values())
        lines.append(
            _check(
                "step events reaching the layer",
                f"{rate:.1f} /s (+ the start and final events)",
                "≤ 20 /s per step",
                rate <= 20,
            )
        )
        final = all(
            run["final_sent"] == run["final_db"] == progress.INCREMENTS
            for run in section["runs"].values()
        )
        lines.append(
            _check("the final value arrives", "yes" if final else "no", "yes", final)
        )
    fan = _rows(results, "fanout")
    for layer in ("in-memory", "Redis"):
        ours = fan.get(f"{layer}: ours → last of 50")
        floor = fan.get(f"{layer}: bare Channels → last of 50 (floor)")
        if ours and floor:
            p50, p99 = ours["p50"] / floor["p50"], ours["p99"] / floor["p99"]
            lines.append(
                _check(
                    f"fan-out to 50, {layer}",
                    f"p50 {p50:.2f}×, p99 {p99:.2f}× the floor",
                    "≤ 1.2×",
                    p50 <= 1.2 and p99 <= 1.2,
                )
            )
    section = results.get("scale")
    if section:
        top = section["levels"][-1]
        stat = summary(top["latencies"])
        lines.append(
            _check(
                f"{top['count']} concurrent: delivery p99",
                f"{stat['p99']:.1f} ms",
                "≤ 50 ms",
                stat["p99"] <= 50,
            )
        )
        base = section["baseline"]["rss"]
        runs = sum(len(lv["latencies"]) + lv["count"] for lv in section["levels"])
        growth = max(level["rss_after_end"] for level in section["levels"]) - base
        lines.append(
            _check(
                "memory flat",
                f"{base:.0f} → {section['baseline']['rss_end']:.0f} MiB "
                f"after {runs} executions",
                "no growth that stays",
                growth <= 0.15 * base,
            )
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (
            "1. Interrupt delivery: door → runner's signal",
            [
                (
                    "interrupts_inprocess",
                    interrupts.FLOOR_MEMORY,
                    "floor: in-memory layer",
                ),
                (
                    "interrupts_inprocess",
                    "websocket message → signal set",
                    "in-process: websocket",
                ),
                ("interrupts_inprocess", "API POST → signal set", "in-process: API"),
                (
                    "interrupts_inprocess",
                    "admin action → signal set",
                    "in-process: admin",
                ),
                ("interrupts_redis", interrupts.FLOOR_PUBSUB, "floor: Redis pub/sub"),
                (
                    "interrupts_redis",
                    "websocket message → signal set (worker)",
                    "Redis: websocket",
                ),
                ("interrupts_redis", "API POST → signal set (worker)", "Redis: API"),
                (
                    "interrupts_redis",
                    "admin action → signal set (worker)",
                    "Redis: admin",
                ),
            ],
        ),
        (
            "3. Peers over Redis: ask → task learns",
            [
                ("peers", peers.OURS_SCRIPT, "ours: request_interrupt()"),
                (
                    "peers",
                    "ours: websocket message → signal set (worker)",
                    "ours: websocket",
                ),
                ("peers", "ours: API POST → signal set (worker)", "ours: API"),
                ("peers", peers.CELERY_TERMINATE, "Celery revoke(terminate)"),
                ("peers", peers.CELERY_ABORT, "Celery abort()"),
                ("peers", peers.RQ_STOP, "RQ stop job"),
            ],
        ),
        (
            "2. Interrupt → a watcher sees `interrupted`",
            [
                (
                    "stopped",
                    "in-process: websocket message → watcher sees",
                    "in-process: websocket",
                ),
                ("stopped", "in-process: API POST → watcher sees", "in-process: API"),
                (
                    "stopped",
                    "Redis: websocket message → watcher sees",
                    "Redis: websocket",
                ),
                ("stopped", "Redis: API POST → watcher sees", "Redis: API"),
                ("stopped", interrupts.IDLE_SERVER, "Redis: API, quiet server"),
            ],
        ),
        (
            "5. Fan-out: runner's group_send → last watcher",
            [
                ("fanout", name, name.replace("Channels ", "").replace(" (floor)", ""))
                for name, _ in results.get("fanout", {}).get("rows", [])
            ],
        ),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    for axis, (title, series) in zip(axes.flat, panels, strict=True):
        colours: dict[str, str] = {}
        for section, name, label in series:
            samples = dict(results.get(section, {}).get("rows", [])).get(name)
            if not samples:
                continue
            ordered = sorted(samples)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            style = "--" if "floor" in label or "bare" in label else "-"
            # A fan-out row and its floor share a colour.
            pair = label.replace("bare", "ours")
            if pair not in colours:
                colours[pair] = f"C{len(colours) % 10}"
            axis.step(
                ordered,
                fractions,
                style,
                where="post",
                label=label,
                color=colours[pair],
            )
        axis.set_xscale("log")
        axis.set_xlabel("ms (log scale)")
        axis.set_ylabel("fraction of samples ≤ x")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle("peace_site latency distributions (ECDF; dashed = floor)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def generated(results: dict, meta: dict) -> str:
    facts = "\n".join(f"- {key}: {value}" for key, value in meta["machine"].items())
    return "\n".join(
        [
            START,
            "",
            f"Run: `{meta['command']}` on {meta['date']}, "
            f"{meta['elapsed'] / 60:.1f} minutes end to end"
            + (" (--quick: few samples, a smoke run)" if meta["quick"] else "")
            + ".",
            "",
            facts,
            "",
            "All times in ms unless marked; ratios are p50 and p99 over the floor "
            "row's. Clocks: `time.time()` in each process, one machine.",
            "",
            "### Targets",
            "",
            targets(results),
            "",
            sections(results),
            f"![latency distributions]({meta['plot']})",
            "",
            END,
        ]
    )


def write(results: dict, meta: dict, out: Path) -> None:
    block = generated(results, meta)
    if out.exists() and START in (text := out.read_text()) and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        out.write_text(before + block + after)
    else:
        out.write_text(f"# Benchmarks\n\n{block}\n")


def text(results: dict) -> str:
    return "### Targets\n\n" + targets(results) + "\n\n" + sections(results)
