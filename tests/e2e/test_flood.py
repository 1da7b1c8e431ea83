"""Socket abuse against a real daphne, through raw sockets and a plain
websocket client.

The attack that took daphne from 130 MB to 591 MB: a view-only client that
never reads, sending 200 `resync` frames a second on a run with a large
snapshot. Now it is disconnected and the server's memory stays put. Frames
too large: answered `too_large` up to the limit daphne is started with,
closed with 1009 and a reason beyond it, never dropped without a word."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import websockets.exceptions
import websockets.sync.client
from django.test import Client
from websockets.frames import Close
from websockets.sync.client import ClientConnection

from executions import services
from executions.flow import SERVER_MESSAGE_LIMIT
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


# -- frames too large: answered while daphne can hold them, closed with 1009
# beyond (never a bare TCP drop, which a browser reports as 1006)

MIB = 1024 * 1024


def connect(port: int, path: str, cookie: str) -> ClientConnection:
    return websockets.sync.client.connect(
        f"ws://127.0.0.1:{port}{path}",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": f"sessionid={cookie}"},
        compression=None,
        proxy=None,
        max_size=None,
        # Take in whatever comes, however slow the test is to look at it:
        # a watcher that reads must not itself look like one that does not.
        max_queue=None,
    )


def next_of(socket_: ClientConnection, kind: str) -> dict:
    """The next message of type `kind`, past the run's own events."""
    while True:
        message = json.loads(socket_.recv(timeout=30))
        if message["type"] == kind:
            return message


def close_after(socket_: ClientConnection, text: str) -> Close | None:
    """The close frame the server answers `text` with (None: the connection
    was dropped without one)."""
    try:
        # The close may come while the frame is still being sent.
        socket_.send(text)
        while True:  # past the run's own events; each wait is bounded
            socket_.recv(timeout=30)
    except websockets.exceptions.ConnectionClosed as closed:
        return closed.rcvd


def watched_run(daphne, make_user) -> tuple[int, str, str]:
    """A queued run's socket on `daphne`: its port, path and a viewer's
    session cookie."""
    client = Client()
    client.force_login(make_user("view"))
    run = services.start_execution(
        "demo.steps", {}, source=Source.CLI, dispatch=False
    ).execution
    port = int(daphne.url.rsplit(":", 1)[1])
    return port, f"/ws/executions/{run.id}/", client.cookies["sessionid"].value


def test_a_frame_over_daphnes_default_limit_is_answered_too_large(daphne, make_user):
    port, path, cookie = watched_run(daphne, make_user)

    with connect(port, path, cookie) as socket_:
        next_of(socket_, "snapshot")
        codes = []
        for size in (MIB + 1, 3 * MIB):
            socket_.send("x" * size)
            codes.append(next_of(socket_, "error")["code"])
        socket_.send(json.dumps({"type": "ping"}))
        next_of(socket_, "pong")

    assert codes == ["too_large", "too_large"]


def test_a_frame_over_the_servers_limit_is_closed_with_1009(daphne, make_user):
    port, path, cookie = watched_run(daphne, make_user)

    with connect(port, path, cookie) as socket_:
        next_of(socket_, "snapshot")
        close = close_after(socket_, "x" * (SERVER_MESSAGE_LIMIT + 1))
    with connect(port, path, cookie) as again:
        snapshot = json.loads(again.recv(timeout=30))  # the first message

    assert close is not None, "dropped without a close frame (1006)"
    assert close.code == 1009
    assert "exceeds payload limit" in close.reason
    assert snapshot["type"] == "snapshot"


# -- a watcher that never reads, on a run that logs megabytes a second

#: tcpi_state in the kernel's struct tcp_info (include/net/tcp_states.h).
TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    """The socket's TCP state, as the kernel sees it, without reading."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


class Reader(threading.Thread):
    """A watcher that reads everything, counting the log events it gets."""

    def __init__(self, connection: ClientConnection) -> None:
        super().__init__(daemon=True)
        self.connection = connection
        self.logs = 0

    def run(self) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            for message in self.connection:
                if json.loads(message)["type"] == "log":
                    self.logs += 1

    def more_logs(self, timeout: float = 30) -> bool:
        """Whether log events keep coming (one more within `timeout`)."""
        seen = self.logs
        deadline = time.monotonic() + timeout
        while self.logs == seen and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.logs > seen


@pytest.fixture
def subprocess_env(subprocess_env):
    """The daphne of this module's tests serves the faulty commands too."""
    return {**subprocess_env, "DJANGO_SETTINGS_MODULE": "tests.e2e.settings"}


def eventually(check: Callable[[], bool], timeout: float = 30) -> bool:
    """Whether `check` holds within `timeout` seconds (a bound against hangs)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_watcher_that_never_reads_is_cut_off_while_another_watches_on(
    daphne, session
):
    port = int(daphne.url.rsplit(":", 1)[1])
    server = SimpleNamespace(url=daphne.url, port=port)  # what Session needs
    run = session.start(server, "faulty.chatty", seconds=120, chars=3000)
    path = f"/ws/executions/{run['id']}/"
    cookie = session.cookies["sessionid"]

    with connect(port, path, cookie) as watching:
        reader = Reader(watching)
        reader.start()
        assert reader.more_logs(), "the run does not chatter"
        before = peak = rss(daphne.process.pid)
        slow = handshake(port, path, cookie)
        slow_client = f"127.0.0.1:{slow.getsockname()[1]} "
        # Generous, but below the ~50 s after which daphne's keepalive ping
        # (20 s, then 30 s for the pong) would drop the silent reader anyway.
        deadline = time.monotonic() + 40
        while tcp_state(slow) == TCP_ESTABLISHED and time.monotonic() < deadline:
            peak = max(peak, rss(daphne.process.pid))
            time.sleep(0.1)
        state = tcp_state(slow)
        slow.close()
        logs_on = reader.more_logs()
    reader.join(timeout=30)

    assert state != TCP_ESTABLISHED, "the server never closed the silent reader"
    assert eventually(
        lambda: any(
            line.startswith(slow_client) and "WSDISCONNECT" in line
            for line in daphne.log.read_text().splitlines()
        )
    )
    assert peak - before < GROWTH_LIMIT, f"daphne grew by {(peak - before) >> 20} MiB"
    assert logs_on, "the other watcher stopped getting events"
    assert daphne.process.poll() is None
