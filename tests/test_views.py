"""The pages: login, the list and its start form, one execution, and the
Interrupt form that works without JavaScript."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
from django.test import Client
from django.utils import timezone

from executions import services
from executions.models import Execution, Source, Status

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
MISSING_ID = "00000000-0000-4000-8000-000000000000"


def start(cmd: str = "demo.steps", user=None, **params) -> Execution:
    """Record an execution without running it (nothing dispatches it)."""
    return services.start_execution(
        cmd, params, user=user, source=Source.CLI, dispatch=False
    ).execution


def running(**params) -> Execution:
    execution = start(**params)
    execution.claim("test-runner")
    return execution


def succeeded(**params) -> Execution:
    execution = running(**params)
    ids = [step["id"] for step in execution.steps]
    steps = [{**step, "status": "succeeded"} for step in execution.steps]
    outcome = {
        "kind": "complete",
        "steps_processed": ids,
        "steps_not_processed": [],
        "errors": {},
    }
    execution.finish(Status.SUCCEEDED, outcome=outcome, steps=steps)
    return execution


def logged_in(user, *, enforce_csrf_checks: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(user)
    return client


def csrf_token(response) -> str:
    return re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode()
    ).group(1)


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def start_form(**fields) -> dict:
    return {
        "cmd": "demo.steps",
        "demo.steps.count": "2",
        "demo.steps.seconds": "0.01",
        "demo.steps.ticks": "2",
        "demo.steps.fail_at": "",
        "demo.steps.cooperative": ["false", "true"],
        "profile": "",
        "strategy": "finish-current",
        "strategy_n": "1",
        **fields,
    }


# -- login -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/executions/",
        f"/executions/{MISSING_ID}/",
    ],
)
def test_pages_require_login(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_execution_interrupt_requires_login(client):
    execution = running()

    response = client.post(f"/executions/{execution.id}/interrupt/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    execution.refresh_from_db()
    assert execution.interrupt_requested_at is None


def test_login_page_logs_in_and_goes_to_the_list(client, make_user):
    make_user("view", username="alice")

    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == "/executions/"


def test_login_page_refuses_a_wrong_password(client, make_user):
    make_user("view", username="alice")

    response = client.post("/accounts/login/", {"username": "alice", "password": "x"})

    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()


def test_logout_logs_out(make_user):
    client = logged_in(make_user("view"))

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert client.get("/executions/").status_code == 302


# -- the list ----------------------------------------------------------------------


def test_execution_list_shows_executions_newest_first(make_user):
    alice = make_user("view", "add", username="alice")
    older = start(count=1)
    newer = start("demo.deploy", user=alice)

    response = logged_in(alice).get("/executions/")

    content = response.content.decode()
    assert response.status_code == 200
    assert content.index(str(newer.id)) < content.index(str(older.id))
    assert "Demo: deploy an application" in content
    assert "alice" in content
    assert (
        '<span class="badge status-queued" data-field="status" '
        'title="waiting for a supervisor to take it">queued</span>'
    ) in content


def test_execution_new_shows_the_start_form_to_starters(make_user):
    client = logged_in(make_user("view", "add"))

    response = client.get("/executions/new/")

    content = response.content.decode()
    assert '<select name="cmd" id="id_cmd">' in content
    assert 'name="demo.steps.count"' in content
    assert 'name="demo.deploy.fail_step"' in content
    assert 'name="files.sync.src"' in content


def test_execution_list_says_when_it_read_the_rows(make_user):
    """The script compares its socket's first snapshot with this moment: a
    run changed after it was missed by the page."""
    before = timezone.now()
    content = logged_in(make_user("view")).get("/executions/").content.decode()

    as_of = re.search(r'data-as-of="([^"]+)"', content).group(1)
    assert before <= datetime.fromisoformat(as_of) <= timezone.now()


def test_execution_list_links_the_start_page_only_for_starters(make_user):
    viewer = logged_in(make_user("view"))
    starter = logged_in(make_user("view", "add"))

    hidden = viewer.get("/executions/").content.decode()
    shown = starter.get("/executions/").content.decode()

    assert 'id="start-link"' not in hidden
    assert 'href="/executions/new/" id="start-link"' in shown
    assert viewer.get("/executions/new/").status_code == 403


def rows_of(response) -> list[str]:
    return re.findall(
        r'<tr class="execution-row[^"]*" data-execution-id="([^"]+)"',
        (response.content.decode()),
    )


def test_execution_list_filters_by_status_command_profile_and_starter(make_user):
    alice = make_user("view", "add", username="alice")
    deploy = start("demo.deploy", user=alice)
    mine = start(user=alice)
    other = start()
    services.start_execution(
        "demo.steps", {}, profile="staging", source=Source.CLI, dispatch=False
    )
    services.request_interrupt(other.id, source=Source.CLI)
    client = logged_in(alice)

    by_cmd = rows_of(client.get("/executions/?cmd=demo.deploy"))
    by_status = rows_of(client.get("/executions/?status=interrupted"))
    by_starter = rows_of(client.get("/executions/?by=alice"))
    by_profile = client.get("/executions/?profile=staging")

    assert by_cmd == [str(deploy.id)]
    assert by_status == [str(other.id)]
    assert by_starter == [str(mine.id), str(deploy.id)]
    assert len(rows_of(by_profile)) == 1


def test_execution_list_counts_each_state_within_the_other_filters(make_user):
    client = logged_in(make_user("view"))
    start()
    start()
    services.request_interrupt(start().id, source=Source.CLI)
    start("demo.deploy")

    content = client.get("/executions/?cmd=demo.steps&status=queued").content.decode()

    assert re.search(
        r'data-count="queued"><span class="dot"></span>queued <b>2</b>', content
    )
    assert re.search(
        r'data-count="interrupted"><span class="dot"></span>interrupted <b>1</b>',
        content,
    )
    assert "all <b>3</b>" in content


def test_execution_list_finds_a_run_by_id_prefix(make_user):
    client = logged_in(make_user("view"))
    wanted = start()
    start()

    short = rows_of(client.get(f"/executions/?q={str(wanted.id)[:5]}"))
    full = rows_of(client.get(f"/executions/?q={str(wanted.id).upper()}"))
    junk = rows_of(client.get("/executions/?q=not-hex"))

    assert short == [str(wanted.id)]
    assert full == [str(wanted.id)]
    assert junk == []


def test_execution_list_pages_by_keyset_and_sorts(make_user, monkeypatch):
    from executions import listing

    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    client = logged_in(make_user("view"))
    runs = [start() for _ in range(3)]

    first = client.get("/executions/")
    after = re.search(r'href="\?after=([0-9a-f-]+)" rel="next"', first.content.decode())
    start()  # a new run must not shift the next page
    second = client.get(f"/executions/?after={after.group(1)}")
    oldest = client.get("/executions/?sort=oldest")

    assert rows_of(first) == [str(runs[2].id), str(runs[1].id)]
    assert rows_of(second) == [str(runs[0].id)]
    assert 'rel="next"' not in second.content.decode()
    assert rows_of(oldest) == [str(runs[0].id), str(runs[1].id)]


def test_execution_list_shows_id_progress_duration_and_params(make_user):
    client = logged_in(make_user("view"))
    execution = succeeded(count=2)

    content = client.get("/executions/").content.decode()

    assert f"<code>{str(execution.id)[:8]}</code>" in content
    assert '<span class="muted small" data-field="overall">2 / 2</span>' in content
    assert 'aria-label="Progress of' in content
    assert '<span class="param">count=2</span>' in content


def test_execution_bulk_interrupt_says_truthfully_what_it_did(make_user):
    alice = make_user("view", "interrupt", username="alice")
    queued, pending, done = start(), running(), succeeded()
    services.request_interrupt(pending.id, source=Source.CLI)
    ids = [str(queued.id), str(pending.id), str(done.id)]

    response = logged_in(alice).post(
        "/executions/interrupt/",
        {
            "ids": ids,
            "reason": "maintenance",
            "force": "0",
            "next": "/executions/?cmd=demo.steps",
        },
        follow=True,
    )

    assert response.redirect_chain[-1][0] == "/executions/?cmd=demo.steps"
    assert shown_messages(response) == [
        "Interrupt requested for 1 execution; 1 already interrupting; "
        "1 already finished."
    ]
    queued.refresh_from_db()
    assert queued.status == Status.INTERRUPTED
    assert queued.interrupt_reason == "maintenance"
    assert queued.interrupt_source == Source.WEB


def test_execution_bulk_force_escalates_and_needs_permission(make_user):
    pending = running()
    services.request_interrupt(pending.id, source=Source.CLI)
    viewer = logged_in(make_user("view"))
    operator = logged_in(make_user("view", "interrupt"))

    refused = viewer.post(
        "/executions/interrupt/", {"ids": [str(pending.id)], "force": "1"}
    )
    response = operator.post(
        "/executions/interrupt/",
        {"ids": [str(pending.id)], "force": "1", "next": "https://evil.example/"},
        follow=True,
    )

    assert refused.status_code == 403
    assert response.redirect_chain[-1][0] == "/executions/"
    assert shown_messages(response) == ["Forced interrupt requested for 1 execution."]
    pending.refresh_from_db()
    assert pending.interrupt_force is True


def test_execution_new_remembers_the_command_started_last(make_user):
    client = logged_in(make_user("view", "add"))

    client.post("/executions/new/", start_form(cmd="demo.deploy"))
    content = client.get("/executions/new/").content.decode()

    assert '<option value="demo.deploy" selected>' in content


def test_execution_new_again_fills_in_an_earlier_run(make_user):
    client = logged_in(make_user("view", "add"))
    earlier = services.start_execution(
        "demo.steps",
        {"count": 7, "cooperative": False},
        profile="staging",
        strategy="poll-next-n:2",
        force_after=30,
        source=Source.CLI,
        dispatch=False,
    ).execution

    content = client.get(f"/executions/new/?again={earlier.id}").content.decode()

    assert '<option value="demo.steps" selected>' in content
    assert 'name="demo.steps.count" id="id_demo.steps.count" value="7"' in content
    assert (
        'name="demo.steps.cooperative" id="id_demo.steps.cooperative" value="true">'
        in content
    )
    assert 'name="profile" id="id_profile" value="staging"' in content
    assert '<option value="poll-next-n" selected>' in content
    assert 'id="id_strategy_n" value="2"' in content
    assert 'id="id_force_after" value="30"' in content


def test_execution_new_explains_each_strategy(make_user):
    client = logged_in(make_user("view", "add"))

    content = client.get("/executions/new/").content.decode()

    assert "a cooperative step may stop at 5 %" in content
    assert "only a forced interrupt stops it" in content


def test_execution_list_without_view_permission_is_forbidden(make_user):
    client = logged_in(make_user("add"))

    response = client.get("/executions/")

    assert response.status_code == 403
    assert "You do not have permission to view executions." in response.content.decode()


def test_execution_list_post_starts_an_execution_from_the_web(make_user):
    alice = make_user("view", "add")

    response = logged_in(alice).post("/executions/", start_form())

    execution = Execution.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/executions/{execution.id}/"
    assert execution.created_from == Source.WEB
    assert execution.created_by == alice
    assert execution.cmd == "demo.steps"
    assert execution.params == {
        "count": 2,
        "seconds": 0.01,
        "ticks": 2,
        "fail_at": None,
        "cooperative": True,
    }
    assert execution.strategy == "finish-current"


@pytest.mark.django_db(transaction=True)
def test_execution_list_post_runs_the_execution(make_user):
    client = logged_in(make_user("view", "add"))

    client.post("/executions/", start_form())

    execution = Execution.objects.get()
    deadline = time.monotonic() + 10
    while not execution.is_finished and time.monotonic() < deadline:
        time.sleep(0.05)
        execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert execution.outcome["steps_processed"] == ["step-1", "step-2"]


def test_execution_list_post_unchecked_box_sends_false(make_user):
    client = logged_in(make_user("view", "add"))

    client.post("/executions/", start_form(**{"demo.steps.cooperative": "false"}))

    assert Execution.objects.get().params["cooperative"] is False


def test_execution_list_post_leaves_out_params_not_posted(make_user):
    client = logged_in(make_user("view", "add"))

    client.post("/executions/", {"cmd": "demo.steps"})

    assert Execution.objects.get().params == {
        "count": 5,
        "seconds": 1.0,
        "ticks": 10,
        "fail_at": None,
        "cooperative": True,
    }


def test_execution_list_post_reads_only_the_chosen_commands_fieldset(make_user):
    client = logged_in(make_user("view", "add"))

    client.post("/executions/", start_form(**{"demo.deploy.seconds": "oops"}))

    assert Execution.objects.get().cmd == "demo.steps"


def test_execution_list_post_sets_profile_and_strategy(make_user):
    client = logged_in(make_user("view", "add"))

    client.post(
        "/executions/",
        start_form(profile=" staging ", strategy="poll-next-n", strategy_n="2"),
    )

    execution = Execution.objects.get()
    assert execution.profile == "staging"
    assert execution.strategy == "poll-next-n:2"


def test_execution_list_post_invalid_params_rerenders_with_errors(make_user):
    client = logged_in(make_user("view", "add"))

    response = client.post(
        "/executions/",
        start_form(**{"demo.steps.count": "0", "demo.steps.ticks": "many"}),
    )

    content = response.content.decode()
    assert response.status_code == 400
    assert '<p class="error">must be at least 1</p>' in content
    assert '<p class="error">must be a whole number</p>' in content
    assert 'name="demo.steps.count" id="id_demo.steps.count" value="0"' in content
    assert Execution.objects.count() == 0


def test_execution_list_post_cross_field_error_is_shown_on_its_field(make_user):
    client = logged_in(make_user("view", "add"))

    response = client.post("/executions/", start_form(**{"demo.steps.fail_at": "9"}))

    assert response.status_code == 400
    assert (
        '<p class="error">must be a step number from 1 to 2</p>'
        in response.content.decode()
    )
    assert Execution.objects.count() == 0


def test_execution_list_post_unknown_cmd_is_refused(make_user):
    client = logged_in(make_user("view", "add"))

    response = client.post("/executions/", {"cmd": "nope"})

    assert response.status_code == 400
    assert "Unknown command &#x27;nope&#x27;." in response.content.decode()
    assert Execution.objects.count() == 0


def test_execution_list_post_bad_strategy_is_refused(make_user):
    client = logged_in(make_user("view", "add"))

    response = client.post(
        "/executions/", start_form(strategy="poll-next-n", strategy_n="-1")
    )

    assert response.status_code == 400
    assert (
        "Unknown interrupt strategy &#x27;poll-next-n:-1&#x27;: use finish-current, "
        "poll-next-n:N (N a whole number) or ignore." in response.content.decode()
    )
    assert Execution.objects.count() == 0


def test_execution_list_post_without_add_permission_is_forbidden(make_user):
    client = logged_in(make_user("view"))

    response = client.post("/executions/", start_form())

    assert response.status_code == 403
    assert "You do not have permission to add executions." in response.content.decode()
    assert Execution.objects.count() == 0


def test_execution_list_post_busy_profile_goes_to_the_active_one(make_user):
    active = services.start_execution(
        "demo.steps", {}, profile="staging", source=Source.CLI, dispatch=False
    ).execution
    client = logged_in(make_user("view", "add"))

    response = client.post("/executions/", start_form(profile="staging"), follow=True)

    assert response.redirect_chain == [(f"/executions/{active.id}/", 302)]
    assert shown_messages(response) == [
        "Profile “staging” is busy: this is its active execution."
    ]
    assert Execution.objects.count() == 1


# -- one execution -------------------------------------------------------------------


def test_execution_detail_renders_steps(make_user):
    execution = start(count=3, ticks=4)
    client = logged_in(make_user("view"))

    response = client.get(f"/executions/{execution.id}/")

    content = response.content.decode()
    assert response.status_code == 200
    for number in (1, 2, 3):
        assert f'data-step-id="step-{number}"' in content
        assert f"Step {number} of 3" in content
    assert '<span data-field="progress">0 / 4</span>' in content
    assert "after step-2" in content
    assert 'id="execution-snapshot"' in content


def test_execution_detail_shows_bytes_human_readable(make_user):
    execution = start("demo.deploy")
    client = logged_in(make_user("view"))

    response = client.get(f"/executions/{execution.id}/")

    assert (
        '<span data-field="progress">0\xa0bytes / 64.0\xa0MB</span>'
        in response.content.decode()
    )


@pytest.mark.parametrize("execution_id", [MISSING_ID, "not-a-uuid"])
def test_execution_detail_unknown_or_malformed_id_is_not_found(make_user, execution_id):
    client = logged_in(make_user("view"))

    response = client.get(f"/executions/{execution_id}/")

    assert response.status_code == 404


def test_execution_detail_without_view_permission_is_forbidden(make_user):
    execution = start()
    client = logged_in(make_user("add"))

    response = client.get(f"/executions/{execution.id}/")

    assert response.status_code == 403


def test_execution_detail_escapes_step_messages(make_user):
    execution = running(count=1)
    steps = [{**execution.steps[0], "message": "<script>alert(1)</script>"}]
    execution.save_steps(steps)
    client = logged_in(make_user("view"))

    response = client.get(f"/executions/{execution.id}/")

    content = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert(1)" not in content


def test_execution_detail_shows_interrupt_button_to_interrupters(make_user):
    execution = running()
    client = logged_in(make_user("view", "interrupt"))

    response = client.get(f"/executions/{execution.id}/")

    assert (
        f'action="/executions/{execution.id}/interrupt/" id="interrupt-form"'
        in response.content.decode()
    )


def test_execution_detail_hides_interrupt_button_without_permission(make_user):
    execution = running()
    client = logged_in(make_user("view"))

    response = client.get(f"/executions/{execution.id}/")

    assert 'id="interrupt-form"' not in response.content.decode()


def test_execution_detail_hides_interrupt_button_when_finished(make_user):
    execution = succeeded()
    client = logged_in(make_user("view", "interrupt"))

    response = client.get(f"/executions/{execution.id}/")

    assert 'id="interrupt-form"' not in response.content.decode()


def test_execution_detail_shows_the_outcome_and_who_interrupted(make_user):
    alice = make_user("view", "interrupt", username="alice")
    execution = start(count=2)
    services.request_interrupt(
        execution.id, user=alice, source=Source.WEB, reason="wrong branch"
    )

    response = logged_in(alice).get(f"/executions/{execution.id}/")

    content = response.content.decode()
    assert '<dd data-field="interrupt-by">alice</dd>' in content
    assert '<dd data-field="interrupt-source">Web page</dd>' in content
    assert '<dd data-field="interrupt-reason">wrong branch</dd>' in content
    processed, not_processed = re.findall(
        r'<ul data-field="(?:not-)?processed" class="step-list">(.*?)</ul>',
        content,
        re.S,
    )
    assert "none" in processed
    assert "<code>step-1</code> Step 1 of 2" in not_processed
    assert "<code>step-2</code> Step 2 of 2" in not_processed


# -- the Interrupt form ---------------------------------------------------------------


def test_execution_interrupt_records_the_request_from_the_web(make_user):
    alice = make_user("view", "interrupt", username="alice")
    execution = running()
    client = logged_in(alice, enforce_csrf_checks=True)
    token = csrf_token(client.get(f"/executions/{execution.id}/"))

    response = client.post(
        f"/executions/{execution.id}/interrupt/",
        {"csrfmiddlewaretoken": token, "force": "0", "reason": "maintenance"},
        follow=True,
    )

    execution.refresh_from_db()
    assert response.redirect_chain == [(f"/executions/{execution.id}/", 302)]
    assert shown_messages(response) == [
        "Interrupt requested: the execution stops at its next safe point."
    ]
    assert execution.status == Status.INTERRUPTING
    assert execution.interrupt_source == Source.WEB
    assert execution.interrupt_requested_by == alice
    assert execution.interrupt_reason == "maintenance"
    assert execution.interrupt_force is False


def test_execution_interrupt_asked_for_json_answers_202_snapshot(make_user):
    execution = running()
    client = logged_in(make_user("view", "interrupt"))

    response = client.post(
        f"/executions/{execution.id}/interrupt/",
        {"force": "1"},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 202
    assert response.json()["status"] == "interrupting"
    assert response.json()["interrupt"]["source"] == "web"
    assert response.json()["interrupt"]["force"] is True


def test_execution_interrupt_asked_for_json_of_a_finished_one_is_409(make_user):
    execution = succeeded()
    client = logged_in(make_user("view", "interrupt"))

    response = client.post(
        f"/executions/{execution.id}/interrupt/",
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "not_running",
        "status": "succeeded",
        "message": f"Execution {execution.id} is not running: it is succeeded.",
    }


def test_execution_interrupt_without_csrf_token_is_refused(make_user):
    execution = running()
    client = logged_in(make_user("view", "interrupt"), enforce_csrf_checks=True)

    response = client.post(f"/executions/{execution.id}/interrupt/")

    execution.refresh_from_db()
    assert response.status_code == 403
    assert execution.interrupt_requested_at is None


def test_execution_interrupt_force_escalates_a_pending_request(make_user):
    alice = make_user("view", "interrupt")
    execution = running()
    services.request_interrupt(execution.id, user=alice, source=Source.WEB)

    response = logged_in(alice).post(
        f"/executions/{execution.id}/interrupt/", {"force": "1"}, follow=True
    )

    execution.refresh_from_db()
    assert shown_messages(response) == [
        "Force requested: steps in flight are being cancelled."
    ]
    assert execution.interrupt_force is True


def test_execution_interrupt_queued_stops_before_it_starts(make_user):
    execution = start()
    client = logged_in(make_user("view", "interrupt"))

    response = client.post(f"/executions/{execution.id}/interrupt/", follow=True)

    execution.refresh_from_db()
    assert shown_messages(response) == ["Interrupted before it started: no step ran."]
    assert execution.status == Status.INTERRUPTED


def test_execution_interrupt_finished_changes_nothing(make_user):
    execution = succeeded()
    client = logged_in(make_user("view", "interrupt"))

    response = client.post(f"/executions/{execution.id}/interrupt/", follow=True)

    execution.refresh_from_db()
    assert response.redirect_chain == [(f"/executions/{execution.id}/", 302)]
    assert shown_messages(response) == [
        "Not running: this execution has finished (succeeded). Nothing changed."
    ]
    assert execution.status == Status.SUCCEEDED
    assert execution.interrupt_requested_at is None


def test_execution_interrupt_without_permission_is_forbidden(make_user):
    execution = running()
    client = logged_in(make_user("view"))

    response = client.post(f"/executions/{execution.id}/interrupt/")

    execution.refresh_from_db()
    assert response.status_code == 403
    assert execution.status == Status.RUNNING
    assert execution.interrupt_requested_at is None


def test_execution_interrupt_invalid_force_is_refused(make_user):
    execution = running()
    client = logged_in(make_user("view", "interrupt"))

    response = client.post(f"/executions/{execution.id}/interrupt/", {"force": "maybe"})

    execution.refresh_from_db()
    assert response.status_code == 400
    assert shown_messages(response) == ["Force must be 0 or 1. Nothing changed."]
    assert execution.interrupt_requested_at is None


@pytest.mark.parametrize("execution_id", [MISSING_ID, "not-a-uuid"])
def test_execution_interrupt_unknown_id_is_not_found(make_user, execution_id):
    client = logged_in(make_user("view", "interrupt"))

    response = client.post(f"/executions/{execution_id}/interrupt/")

    assert response.status_code == 404


def test_execution_interrupt_refuses_get(make_user):
    execution = running()
    client = logged_in(make_user("view", "interrupt"))

    response = client.get(f"/executions/{execution.id}/interrupt/")

    execution.refresh_from_db()
    assert response.status_code == 405
    assert execution.interrupt_requested_at is None


# -- the Resume button ----------------------------------------------------------------


def interrupted() -> Execution:
    execution = start()
    services.request_interrupt(execution.id, source=Source.CLI)
    return Execution.objects.get(pk=execution.id)


def test_execution_detail_offers_resume_for_an_interrupted_run(make_user):
    execution = interrupted()

    response = logged_in(make_user("view", "add")).get(f"/executions/{execution.id}/")

    assert 'id="resume-form"' in response.content.decode()
    assert 'class="resume-form" hidden' not in response.content.decode()


def test_execution_detail_hides_resume_without_add_permission(make_user):
    execution = interrupted()

    response = logged_in(make_user("view")).get(f"/executions/{execution.id}/")

    assert 'id="resume-form"' not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_execution_resume_starts_a_linked_run(make_user):
    alice = make_user("view", "add", username="alice")
    original = interrupted()

    response = logged_in(alice).post(f"/executions/{original.id}/resume/", follow=True)

    resumed = Execution.objects.exclude(pk=original.pk).get()
    assert response.redirect_chain == [(f"/executions/{resumed.id}/", 302)]
    assert shown_messages(response) == [
        "Resumed: the steps that succeeded are skipped."
    ]
    assert resumed.resumed_from == original
    assert resumed.created_from == Source.WEB
    assert resumed.created_by == alice
    assert f'href="/executions/{original.id}/"' in response.content.decode()


def test_execution_resume_of_a_running_one_changes_nothing(make_user):
    execution = running()
    client = logged_in(make_user("view", "add"))

    response = client.post(f"/executions/{execution.id}/resume/", follow=True)

    assert Execution.objects.count() == 1
    assert shown_messages(response) == [
        f"Not resumed: Execution {execution.id} cannot be resumed: it is running; "
        "only interrupted, failed or lost executions can."
    ]


def test_execution_resume_without_permission_is_403(make_user):
    execution = interrupted()

    response = logged_in(make_user("view")).post(f"/executions/{execution.id}/resume/")

    assert response.status_code == 403
    assert Execution.objects.count() == 1


def test_execution_resume_unknown_is_404_and_get_is_405(make_user):
    client = logged_in(make_user("view", "add"))

    assert client.post("/executions/nope/resume/").status_code == 404
    assert client.get(f"/executions/{interrupted().id}/resume/").status_code == 405


def test_execution_detail_shows_every_interrupt_request_and_the_stopping_steps(
    make_user,
):
    alice = make_user("view", "interrupt", username="alice")
    bob = make_user("view", "interrupt", username="bob")
    execution = running(count=2)
    execution.save_steps(
        [{**execution.steps[0], "status": "running"}, execution.steps[1]]
    )
    services.request_interrupt(
        execution.id, user=alice, source=Source.WEB, reason="why"
    )
    services.request_interrupt(execution.id, user=bob, source=Source.API, force=True)
    Execution.objects.filter(pk=execution.pk).update(
        interrupt_delivered_at=execution.created_at
    )

    content = logged_in(alice).get(f"/executions/{execution.id}/").content.decode()

    rows = re.findall(r'<tr data-request="\d">(.*?)</tr>', content, re.S)
    assert len(rows) == 2
    cells = [re.findall(r"<td>(.*?)</td>", row, re.S)[1:4] for row in rows]
    assert cells == [
        ["alice", "Web page", "graceful"],
        ["bob", "JSON API", "<strong>forced</strong>"],
    ]
    stopping = re.findall(
        r'data-field="stopping" class="step-stopping"( hidden)?>', content
    )
    assert stopping == ["", " hidden"]


def test_execution_detail_names_its_status_and_progress_for_assistive_tech(make_user):
    execution = running(count=2)

    content = (
        logged_in(make_user("view"))
        .get(f"/executions/{execution.id}/")
        .content.decode()
    )

    assert "<title>running · Demo: a chain of steps · peace_site</title>" in content
    assert 'role="status" aria-live="polite">Status: running</p>' in content
    assert 'aria-labelledby="overall-text"' in content
    assert content.count('aria-labelledby="title-step-') == 2
    assert content.index("<h1>") < content.index("<h2")
