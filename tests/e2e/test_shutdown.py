"""SIGTERM to a real daphne with in-process executions running: each is
interrupted and recorded with source `shutdown`, its watchers are told
before their sockets close, and nothing is left running."""

from __future__ import annotations

import http.client
import json
import signal
import time

import pytest
from django.test import Client
from websockets.sync.client import connect

from executions.models import Execution, Status

pytestmark = pytest.mark.e2e
CSRF = "0123456789abcdef0123456789abcdef"
LONG_RUN = {"count": 3, "seconds": 30, "ticks": 3000}


def post(url: str, cookie: str, path: str, body: dict) -> dict:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(
        "POST",
        path,
        json.dumps(body),
        {"Cookie": cookie, "X-CSRFToken": CSRF, "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 201, response.read()
    return json.loads(response.read())


def wait_until_running(ids: list[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while Execution.objects.filter(pk__in=ids, status=Status.RUNNING).count() < len(
        ids
    ):
        assert time.monotonic() < deadline, "the runs did not start"
        time.sleep(0.02)


def test_sigterm_drains_in_process_executions(daphne, make_user):
    client = Client()
    client.force_login(make_user("view", "add"))
    cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF}"
    ids = [
        post(
            daphne.url,
            cookie,
            "/api/executions/",
            {"cmd": "demo.steps", "params": LONG_RUN},
        )["id"]
        for _ in range(2)
    ]
    wait_until_running(ids)
    ws_url = daphne.url.replace("http://", "ws://") + f"/ws/executions/{ids[0]}/"
    with connect(
        ws_url, origin=daphne.url, additional_headers={"Cookie": cookie}
    ) as watcher:
        assert json.loads(watcher.recv(timeout=10))["type"] == "snapshot"

        daphne.process.send_signal(signal.SIGTERM)

        while (message := json.loads(watcher.recv(timeout=15)))["type"] != "finished":
            pass
    assert daphne.process.wait(timeout=20) == 0

    execution = message["execution"]
    assert execution["status"] == "interrupted"
    assert execution["interrupt"]["source"] == "shutdown"
    assert execution["outcome"]["steps_not_processed"] == ["step-1", "step-2", "step-3"]
    assert not Execution.objects.filter(
        status__in=["queued", "running", "interrupting"]
    ).exists()
    assert set(
        Execution.objects.filter(pk__in=ids).values_list("status", "interrupt_source")
    ) == {(Status.INTERRUPTED, "shutdown")}
