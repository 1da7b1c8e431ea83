"""Supervisor identities: `host:pid:nonce`, so anyone on the same host can
tell at once that a supervisor's process is gone."""

from __future__ import annotations

import os
import socket
import uuid

HOST = socket.gethostname()


def new_identity() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def pid_of(identity: str) -> int | None:
    """The process ID an identity names, or None if it is not one."""
    parts = identity.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def is_gone(identity: str) -> bool:
    """True when `identity` names a process on this host that no longer
    exists. False when it is alive, elsewhere, or unknown: the heartbeat
    decides those (a reused PID errs on the side of waiting)."""
    pid = pid_of(identity)
    if pid is None or identity.split(":", 1)[0] != HOST:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
