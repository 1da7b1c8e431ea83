"""The audit record: who started and who interrupted each execution, from
which door, when and why, as the detail page, the API snapshot and the admin
change page show it, and kept once the run has ended."""

from __future__ import annotations

import getpass
import json
import re
import time

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import formats, timezone

from executions import services
from executions.models import Execution, Source, Status
from tests.factories import FAST, execution
from tests.sockets import receive, socket

pytestmark = pytest.mark.django_db

ADMIN = "/admin/executions/execution/"
REASON = "deploy freeze: wrong branch"
SOURCES = dict(Source.choices)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ada(make_user):
    return make_user("view", "add", "interrupt", is_staff=True, username="ada")


@pytest.fixture
def grace(make_user):
    """Someone else, who only watches."""
    client = Client()
    client.force_login(make_user("view", is_staff=True, username="grace"))
    return client


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, data: dict):
    return client.post(url, json.dumps(data), content_type="application/json")


# -- what each place shows ---------------------------------------------------------


def page_audit(client: Client, execution_id) -> dict[str, str]:
    """The detail page's record: started by / from / when, and the interrupt."""
    html = client.get(f"/executions/{execution_id}/").content.decode()
    started = re.search(
        r"<dt>Started by</dt><dd>(.*?) <span class=\"muted\">\((.*?)\)</span>", html
    )
    fields = dict(re.findall(r'data-field="(interrupt-[a-z]+)"[^>]*>([^<]*)<', html))
    created = re.search(r'<time data-field="created"[^>]*>([^<]*)<', html)
    return {
        "by": started.group(1),
        "from": started.group(2),
        "created": created.group(1),
        **fields,
    }


def admin_audit(client: Client, execution_id) -> dict[str, str]:
    """The admin change page's read-only fields, by field name, as text (a
    boolean's icon as its alt text)."""
    html = client.get(f"{ADMIN}{execution_id}/change/").content.decode()
    html = re.sub(r'<img [^>]*alt="(\w+)"[^>]*>', r"\1", html)
    return {
        name: re.sub(r"<[^>]+>", "", value).strip()
        for name, value in re.findall(
            r'field-(\w+)">.*?<div class="readonly">(.*?)</div>', html, re.S
        )
    }


def shown_time(moment) -> str:
    """A timestamp as the admin shows it."""
    return formats.localize(timezone.template_localtime(moment))


def page_time(iso: str) -> str:
    """A timestamp as the page shows it (UTC, to the second)."""
    return iso[:19].replace("T", " ")


# -- who started it, from which door, when -----------------------------------------


def start_from_web(client: Client) -> None:
    client.post("/executions/", {"cmd": "demo.steps", "demo.steps.count": "1"})


def start_from_api(client: Client) -> None:
    post_json(client, "/api/executions/", {"cmd": "demo.steps", "params": FAST})


def start_from_admin(client: Client) -> None:
    original = execution(Status.FAILED)
    client.post(f"{ADMIN}{original.pk}/resume/")


STARTERS = {
    Source.WEB: start_from_web,
    Source.API: start_from_api,
    Source.ADMIN: start_from_admin,
}


@pytest.mark.parametrize("source", STARTERS)
def test_audit_shows_who_started_it_from_which_door_and_when(ada, grace, source):
    STARTERS[source](logged_in(ada))
    started = Execution.objects.get(created_by=ada)

    page = page_audit(grace, started.pk)
    api = grace.get(f"/api/executions/{started.pk}/").json()
    admin = admin_audit(grace, started.pk)

    snapshot = started.snapshot()
    assert (page["by"], page["from"]) == ("ada", SOURCES[source])
    assert page["created"] == page_time(snapshot["created_at"])
    assert (api["created_by"], api["created_from"]) == ("ada", source)
    assert api["created_at"] == snapshot["created_at"]
    assert admin["created_by"] == "ada"
    assert admin["created_from"] == SOURCES[source]
    assert admin["created_at"] == shown_time(started.created_at)


def test_audit_shows_a_terminal_start_as_the_terminal(grace):
    started = execution(Status.RUNNING, source=Source.CLI)

    page = page_audit(grace, started.pk)
    api = grace.get(f"/api/executions/{started.pk}/").json()
    admin = admin_audit(grace, started.pk)

    assert (page["by"], page["from"]) == ("—", "Terminal")
    assert (api["created_by"], api["created_from"]) == (None, "cli")
    assert admin["created_from"] == "Terminal"


# -- who interrupted it, from which door, when and why -----------------------------


def interrupt_from_web(client: Client, execution_id) -> None:
    client.post(f"/executions/{execution_id}/interrupt/", {"reason": REASON})


def interrupt_from_api(client: Client, execution_id) -> None:
    post_json(client, f"/api/executions/{execution_id}/interrupt/", {"reason": REASON})


def interrupt_from_admin_button(client: Client, execution_id) -> None:
    client.post(f"{ADMIN}{execution_id}/interrupt/", {"reason": REASON})


def interrupt_from_admin_action(client: Client, execution_id) -> None:
    client.post(
        ADMIN,
        {"action": "interrupt_selected", "_selected_action": [str(execution_id)]},
    )


def interrupt_from_cli(client: Client, execution_id) -> None:
    call_command("interrupt", str(execution_id), "--reason", REASON, "--force")


# door: (how, who, source, why, forced)
INTERRUPTERS = {
    "web": (interrupt_from_web, "ada", Source.WEB, REASON, False),
    "api": (interrupt_from_api, "ada", Source.API, REASON, False),
    "admin-button": (interrupt_from_admin_button, "ada", Source.ADMIN, REASON, False),
    "admin-action": (interrupt_from_admin_action, "ada", Source.ADMIN, "", False),
    "cli": (interrupt_from_cli, getpass.getuser(), Source.CLI, REASON, True),
}


def assert_interrupt_shown(
    viewer: Client, execution_id, who: str, source: str, why: str, forced: bool
) -> None:
    stored = Execution.objects.get(pk=execution_id)
    snapshot = stored.snapshot()["interrupt"]

    page = page_audit(viewer, execution_id)
    api = viewer.get(f"/api/executions/{execution_id}/").json()["interrupt"]
    admin = admin_audit(viewer, execution_id)

    request = {"by": who, "source": source, "force": forced, "reason": why}
    assert api == {
        "requested_at": snapshot["requested_at"],
        **request,
        "delivered_at": snapshot["delivered_at"],
        "requests": [{"at": snapshot["requested_at"], **request}],
    }
    assert page["interrupt-by"] == who
    assert page["interrupt-source"] == SOURCES[source]
    assert page["interrupt-at"] == page_time(snapshot["requested_at"])
    assert page["interrupt-reason"] == (why or "—")
    assert page["interrupt-force"] == ("yes" if forced else "no")
    assert admin["interrupt_requested_by_name"] == who
    assert admin["interrupt_source"] == SOURCES[source]
    assert admin["interrupt_requested_at"] == shown_time(stored.interrupt_requested_at)
    assert admin["interrupt_reason"] == (why or "-")
    assert admin["interrupt_force"] == str(forced)


@pytest.mark.parametrize("door", INTERRUPTERS)
def test_audit_shows_who_interrupted_it_from_which_door_when_and_why(ada, grace, door):
    how, who, source, why, forced = INTERRUPTERS[door]
    running = execution(Status.RUNNING)

    how(logged_in(ada), running.pk)

    assert_interrupt_shown(grace, running.pk, who, source, why, forced)


@pytest.mark.django_db(transaction=True)
async def test_audit_shows_an_interrupt_from_the_websocket(ada, grace):
    running = await database_sync_to_async(execution)(Status.RUNNING)

    async with socket(f"/ws/executions/{running.pk}/", ada) as (communicator, _):
        await receive(communicator)
        await communicator.send_json_to({"type": "interrupt", "reason": REASON})
        await receive(communicator)

    await database_sync_to_async(assert_interrupt_shown)(
        grace, running.pk, "ada", Source.WEBSOCKET, REASON, False
    )


# -- kept ------------------------------------------------------------------------------


def wait_for(client: Client, execution_id, statuses: set[str]) -> dict:
    deadline = time.monotonic() + 20
    snapshot = client.get(f"/api/executions/{execution_id}/").json()
    while snapshot["status"] not in statuses and time.monotonic() < deadline:
        time.sleep(0.05)
        snapshot = client.get(f"/api/executions/{execution_id}/").json()
    return snapshot


@pytest.mark.django_db(transaction=True)
def test_audit_is_kept_when_the_run_ends(ada, grace):
    client = logged_in(ada)
    slow = {"count": 3, "seconds": 10, "ticks": 100}
    started = post_json(
        client, "/api/executions/", {"cmd": "demo.steps", "params": slow}
    ).json()
    wait_for(client, started["id"], {Status.RUNNING})

    post_json(client, f"/api/executions/{started['id']}/interrupt/", {"reason": REASON})
    ended = wait_for(client, started["id"], {Status.INTERRUPTED})

    assert ended["status"] == Status.INTERRUPTED
    assert (ended["created_by"], ended["created_from"]) == ("ada", "api")
    assert_interrupt_shown(grace, started["id"], "ada", Source.API, REASON, False)


def test_audit_keeps_the_interrupters_name_when_the_account_is_deleted(
    make_user, grace
):
    gone = make_user("view", "interrupt", username="mallory")
    interrupted = execution(Status.RUNNING)
    services.request_interrupt(
        interrupted.pk, user=gone, source=Source.API, reason=REASON
    )

    gone.delete()

    assert_interrupt_shown(grace, interrupted.pk, "mallory", Source.API, REASON, False)


def test_audit_keeps_the_starters_name_when_the_account_is_deleted(make_user, grace):
    gone = make_user("add", username="mallory")
    started = execution(Status.RUNNING, user=gone, source=Source.API)

    get_user_model().objects.filter(pk=gone.pk).delete()

    assert page_audit(grace, started.pk)["by"] == "mallory"
