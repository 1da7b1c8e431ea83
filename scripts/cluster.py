"""Start the distributed mode on one machine: a local redis-server, a Celery
worker and daphne, all on 127.0.0.1, on the database DATABASE_URL names
(SQLite by default). Ctrl-C stops them cleanly (workers drain: their runs
are interrupted and recorded with source `shutdown`).

    make cluster                 # or: python scripts/cluster.py
    make cluster POSTGRES=1      # on a throwaway PostgreSQL cluster
    python scripts/cluster.py --runner tasks --workers 2   # Django Tasks

Terminal runs join in with the printed REDIS_URL:

    REDIS_URL=redis://127.0.0.1:6380/0 .venv/bin/python manage.py execute demo.deploy
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
# executions.flow.DAPHNE_ARGS (this script runs without the project on its path).
DAPHNE_ARGS = [
    "--websocket-max-message-size=4194304",
    "--websocket-max-frame-size=4194304",
]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{process.args[0]} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _stop(*_) -> None:
    raise KeyboardInterrupt


def worker_argv(runner: str, python: str, concurrency: int) -> list[str]:
    """One worker of `runner`: a Celery worker's pool runs `concurrency`
    executions at once; a db_worker or runworker process one each."""
    if runner == "celery":
        return [python, "-m", "celery", "-A", "peace_site", "worker"] + [
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
        ]
    if runner == "tasks":
        return [python, "manage.py", "db_worker", "--interval", "0.2", "--no-reload"]
    return [python, "manage.py", "runworker", "executions"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runner", choices=["celery", "tasks", "worker"], default="celery"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: 1 Celery worker, 2 of the others)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="a Celery worker's pool size"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis-port", type=int, default=6380)
    options = parser.parse_args()

    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("redis-server not found: apt-get install redis-server")
    redis_url = f"redis://127.0.0.1:{options.redis_port}/0"
    env = dict(os.environ, REDIS_URL=redis_url, EXECUTIONS_RUNNER=options.runner)
    workers = options.workers or (1 if options.runner == "celery" else 2)
    env.setdefault("PYTHONUNBUFFERED", "1")
    scratch = tempfile.mkdtemp(prefix="peace-cluster-")
    processes: list[subprocess.Popen] = []

    def start(name: str, argv: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(argv, env=env, cwd=ROOT)
        processes.append(process)
        print(f"started {name} (pid {process.pid})", flush=True)
        return process

    try:
        redis = start(
            "redis-server",
            [redis_server, "--bind", "127.0.0.1", "--port", str(options.redis_port)]
            + ["--save", "", "--appendonly", "no", "--dir", scratch],
        )
        wait_for_port(options.redis_port, redis)
        python = str(VENV_BIN / "python")
        for command in (["migrate", "--noinput"], ["ensure_admin"]):
            subprocess.run([python, "manage.py", *command], env=env, check=True)
        for number in range(1, workers + 1):
            argv = worker_argv(options.runner, python, options.concurrency)
            if options.runner == "celery":
                argv += ["--hostname", f"worker{number}@%h"]
            start(f"{options.runner} worker {number}", argv)
        daphne = start(
            "daphne",
            [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(options.port)]
            + DAPHNE_ARGS
            + ["peace_site.asgi:application"],
        )
        wait_for_port(options.port, daphne)
        print(
            f"\nCluster up: http://127.0.0.1:{options.port}/executions/  "
            f"(admin: /admin/)\nTerminal runs: REDIS_URL={redis_url} "
            f"{python} manage.py execute demo.deploy\nCtrl-C stops everything.\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _stop)
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("a process exited; stopping the cluster", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # Workers and daphne first (they drain through Redis), Redis last.
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(scratch, ignore_errors=True)
        print("cluster stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
