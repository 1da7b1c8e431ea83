"""Run a command against a throwaway PostgreSQL cluster on 127.0.0.1.

    python scripts/with_postgres.py pytest tests/

Creates a cluster in a temporary directory (fsync off: it is thrown away),
starts it on a free port, exports DATABASE_URL to the command, then stops
the server by its PID and removes the directory. Exits with the command's
exit code. Postgres refuses to run as root, so as root it runs as the
`postgres` user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def find(binary: str) -> str:
    found = shutil.which(binary) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{binary}"), reverse=True)),
        None,
    )
    if not found:
        sys.exit(f"{binary} not found: install Debian's postgresql package.")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str]) -> int:
    if not argv:
        sys.exit(__doc__)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = tempfile.mkdtemp(prefix="peace-pg-")
    data = os.path.join(root, "data")
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    server = None
    try:
        subprocess.run(
            [*as_postgres, find("initdb"), "-D", data, "-U", "postgres"]
            + ["--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        server = subprocess.Popen(
            [*as_postgres, find("postgres"), "-D", data, "-k", root]
            + ["-h", "127.0.0.1", "-p", str(port), "-c", "fsync=off"]
            + ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            + ["-c", "max_connections=200"],
            stdout=open(os.path.join(root, "log"), "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while subprocess.run(
            [find("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        ).returncode:
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(Path(root, "log").read_text())
            time.sleep(0.1)
        subprocess.run(
            [find("createdb"), "-h", "127.0.0.1", "-p", str(port)]
            + ["-U", "postgres", "peace_site"],
            check=True,
        )
        env = dict(os.environ)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{port}/peace_site"
        print(f"PostgreSQL on 127.0.0.1:{port}", flush=True)
        return subprocess.run(argv, env=env).returncode
    finally:
        if server is not None:
            # pg_ctl signals the postmaster itself (as root, `server` is
            # runuser, which would not pass a signal on).
            subprocess.run(
                [*as_postgres, find("pg_ctl"), "stop", "-D", data, "-m", "fast"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
