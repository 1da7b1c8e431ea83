"""What the benchmarks share: percentiles, tables, a throwaway Redis, the
processes a scenario starts, the probe collector and an HTTP session."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where reports go: the checkout, even when ROOT is a snapshot of it.
OUTPUT_ROOT = Path(os.environ.get("PEACE_BENCH_OUTPUT", ROOT))
PYTHON = sys.executable
DAPHNE = str(Path(PYTHON).with_name("daphne"))


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


def table(
    rows: list[tuple[str, Sequence[float]]],
    floor: str | None = None,
    floors: Mapping[str, str] | None = None,
) -> str:
    """Latency rows in ms, with each p50/p99 as a ratio of the floor row's
    (`floor` for every row, or `floors` naming each row's own floor)."""
    stats = {name: summary(samples) for name, samples in rows if samples}
    floor_of = dict(floors or {})
    if floor:
        floor_of = {name: floor_of.get(name, floor) for name in stats}
    header = f"| {'scenario':<44} | n | min | p50 | p90 | p99 | max |"
    header += " p50/floor | p99/floor |" if floor_of else ""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, stat in stats.items():
        line = f"| {name:<44} | {stat['n']} |" + "".join(
            f" {_ms(stat[key])} |" for key in ("min", "p50", "p90", "p99", "max")
        )
        base = stats.get(floor_of.get(name, ""))
        if base:
            line += (
                f" {stat['p50'] / base['p50']:.2f} | {stat['p99'] / base['p99']:.2f} |"
            )
        elif floor_of:
            line += " | |"
        lines.append(line)
    return "\n".join(lines)


def _ms(value: float) -> str:
    return (
        f"{value:.3f}"
        if value < 1
        else f"{value:.2f}"
        if value < 100
        else f"{value:.0f}"
    )


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


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Processes:
    """The processes one scenario starts, all on 127.0.0.1. Stopped by PID,
    newest first: SIGTERM, then SIGKILL after `grace` seconds."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str]
    ) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv, cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen, grace: float = 20) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            self.stop(process)
        self.started.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


class Collector:
    """Receives the probes' UDP reports (`benchmarks/probe.py`): JSON objects
    with a kind `k`, an execution `id` (UUID hex) and a wall-clock time `t`
    taken in the reporting process at the moment it reports."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.reports: dict[tuple[str, str], list[dict]] = defaultdict(list)
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            report = json.loads(data)
            with self.changed:
                self.reports[report["k"], report["id"]].append(report)
                self.changed.notify_all()

    def wait(self, kind: str, key: str, timeout: float = 30) -> dict:
        """The first report of `kind` for `key`, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.reports.get((kind, key)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {kind!r} report for {key} in {timeout}s")
                self.changed.wait(left)
            return self.reports[kind, key][0]

    def all(self, kind: str, key: str) -> list[dict]:
        with self.changed:
            return list(self.reports.get((kind, key), ()))

    def close(self) -> None:
        self.sock.close()


class HttpSession:
    """A logged-in browser's session over one keep-alive connection: cookies,
    CSRF token, JSON and form posts. Not thread-safe: one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.connection: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, bytes]:
        headers = {
            "Host": f"127.0.0.1:{self.port}",
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            **{key.replace("_", "-"): value for key, value in headers.items()},
        }
        for attempt in range(2):
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(
                        "127.0.0.1", self.port, timeout=60
                    )
                self.connection.request(method, path, body, headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                if attempt:
                    raise
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, data

    @property
    def csrf(self) -> str:
        return self.cookies.get("csrftoken", "")

    def login(self, username: str, password: str) -> None:
        self.request("GET", "/accounts/login/")
        status, _ = self.post_form(
            "/accounts/login/", {"username": username, "password": password}
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login as {username} failed ({status})")

    def post_form(self, path: str, fields: Mapping[str, str]) -> tuple[int, bytes]:
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": self.csrf, **fields})
        return self.request(
            "POST",
            path,
            body.encode(),
            Content_Type="application/x-www-form-urlencoded",
            Referer=f"http://127.0.0.1:{self.port}{path}",
        )

    def post_json(self, path: str, data: object) -> tuple[int, dict]:
        status, body = self.request(
            "POST",
            path,
            json.dumps(data).encode(),
            Content_Type="application/json",
            X_CSRFToken=self.csrf,
        )
        return status, json.loads(body) if body else {}

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def machine_facts() -> dict[str, str]:
    """What the numbers were measured on."""
    import platform
    from importlib import metadata

    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(meminfo.readline().split()[1])
    redis_version = "not installed"
    if shutil.which("redis-server"):
        redis_version = (
            subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True
            )
            .stdout.split()[2]
            .removeprefix("v=")
        )
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "Django",
            "channels",
            "daphne",
            "channels-redis",
            "redis",
            "celery",
            "rq",
            "websockets",
        )
    )
    return {
        "cpu": f"{os.cpu_count()} × {model}",
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis-server": redis_version,
        "packages": versions,
    }
