"""What the benchmarks share: percentiles, tables, and a throwaway Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "min": min(samples),
        "p50": percentile(samples, 0.50),
        "p90": percentile(samples, 0.90),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
    }


def table(rows: list[tuple[str, Sequence[float]]], floor: str | None = None) -> str:
    """Latency rows in ms, with each p50/p99 as a ratio of the floor row's."""
    stats = {name: summary(samples) for name, samples in rows}
    base = stats.get(floor) if floor else None
    header = f"| {'scenario':<44} | n | min | p50 | p90 | p99 | max |"
    header += " p50/floor | p99/floor |" if base else ""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, stat in stats.items():
        line = f"| {name:<44} | {stat['n']} |" + "".join(
            f" {stat[key]:.2f} |" for key in ("min", "p50", "p90", "p99", "max")
        )
        if base:
            line += (
                f" {stat['p50'] / base['p50']:.2f} | {stat['p99'] / base['p99']:.2f} |"
            )
        lines.append(line)
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    port = free_port()
    scratch = tempfile.mkdtemp(prefix="peace-bench-redis-")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        + ["--appendonly", "no", "--dir", scratch],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)
