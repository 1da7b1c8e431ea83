"""The attack that took daphne from 130 MB to 591 MB: a view-only client that
never reads, sending 200 `resync` frames a second on a run with a large
snapshot. Now it is disconnected and the server's memory stays put (real
daphne, a raw socket that never reads)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

import pytest
from django.test import Client

from executions import services
from executions.models import Source

pytestmark = pytest.mark.e2e

#: Far above what a bounded outbox can hold, far below the 460 MB seen.
GROWTH_LIMIT = 64 * 1024 * 1024


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def handshake(port: int, path: str, cookie: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    # A tiny window: the server meets a client that does not read at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nCookie: sessionid={cookie}\r\n\r\n"
        ).encode()
    )
    answer = sock.recv(1024)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def frame(payload: bytes) -> bytes:
    """A masked text frame, as a client sends it."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked


def test_a_resync_flood_that_never_reads_is_cut_off_and_costs_nothing(
    daphne, make_user
):
    viewer = make_user("view", username="flooder")
    client = Client()
    client.force_login(viewer)
    big = services.start_execution(
        "demo.steps",
        {"count": 1000, "seconds": 0},
        source=Source.CLI,
        dispatch=False,
    ).execution
    port = int(daphne.url.rsplit(":", 1)[1])
    before = rss(daphne.process.pid)
    sock = handshake(
        port, f"/ws/executions/{big.id}/", client.cookies["sessionid"].value
    )
    resync = frame(json.dumps({"type": "resync"}).encode())

    cut_off = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            sock.sendall(resync)
        except OSError:  # reset or closed by the server
            cut_off = True
            break
        time.sleep(1 / 200)
    grown = rss(daphne.process.pid) - before
    sock.close()

    assert cut_off or "WSDISCONNECT" in daphne.log.read_text()
    assert grown < GROWTH_LIMIT, f"daphne grew by {grown / 2**20:.0f} MiB"
    assert daphne.process.poll() is None
