from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from executions import services
from executions.models import Execution, Status

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:executions_execution_changelist")
PASSWORD = "correct horse battery staple"


def change_url(execution: Execution) -> str:
    return reverse("admin:executions_execution_change", args=[execution.pk])


def interrupt_url(execution: Execution) -> str:
    return reverse("admin:executions_execution_interrupt", args=[execution.pk])


def short(execution: Execution) -> str:
    return str(execution.pk)[:8]


def queued() -> Execution:
    return services.start_execution(
        "demo.steps", {"seconds": 0.01}, source="cli", dispatch=False
    ).execution


def running() -> Execution:
    execution = queued()
    execution.claim("test-runner")
    return execution


def finished(status: str = Status.SUCCEEDED) -> Execution:
    execution = running()
    steps = [{**step, "status": "succeeded"} for step in execution.steps]
    ids = [step["id"] for step in steps]
    outcome = {"kind": "complete", "steps_processed": ids, "steps_not_processed": []}
    execution.finish(status, outcome={**outcome, "errors": {}}, steps=steps)
    return execution


def run_action(
    client: Client,
    *executions: Execution,
    action: str = "interrupt_selected",
    reason: str = "",
):
    return client.post(
        CHANGELIST,
        {
            "action": action,
            "reason": reason,
            "_selected_action": [str(execution.pk) for execution in executions],
        },
    )


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def login():
    """A fresh test client per user, so two users can act in one test."""

    def log_in(user) -> Client:
        client = Client()
        assert client.login(username=user.username, password=PASSWORD)
        return client

    return log_in


@pytest.fixture
def viewer(make_user, login):
    """A staff client that may view executions but not interrupt them."""
    return login(make_user("view", is_staff=True))


@pytest.fixture
def interrupter(make_user):
    return make_user("view", "interrupt", is_staff=True, username="ada")


@pytest.fixture
def operator(interrupter, login):
    return login(interrupter)


@pytest.fixture
def superuser_client(make_user, login):
    return login(make_user(is_staff=True, is_superuser=True))


# -- the "Interrupt selected executions" action --------------------------------


def test_action_interrupts_mixed_selection(operator, interrupter):
    live, waiting = running(), queued()
    done, broken = finished(), finished(Status.FAILED)

    response = run_action(operator, live, waiting, done, broken)

    assert response.status_code == 302
    assert messages_of(response) == [
        ("success", "Interrupt requested for 2 executions; 2 already finished."),
    ]
    live.refresh_from_db()
    assert live.status == Status.INTERRUPTING
    assert live.interrupt_source == "admin"
    assert live.interrupt_requested_by == interrupter
    assert live.interrupt_requested_by_name == "ada"
    waiting.refresh_from_db()
    assert waiting.status == Status.INTERRUPTED
    assert waiting.interrupt_source == "admin"
    for execution, status in ((done, Status.SUCCEEDED), (broken, Status.FAILED)):
        execution.refresh_from_db()
        assert execution.status == status
        assert execution.interrupt_requested_at is None


def test_action_reports_pending_interrupt_as_already(operator):
    execution = running()
    services.request_interrupt(execution.pk, source="cli")

    response = run_action(operator, execution)

    assert messages_of(response) == [("warning", "1 already interrupting.")]
    execution.refresh_from_db()
    assert execution.interrupt_source == "cli"


def test_force_action_escalates_with_a_reason(operator, interrupter):
    live, done = running(), finished()
    services.request_interrupt(live.pk, source="cli")

    response = run_action(
        operator, live, done, action="force_selected", reason="stuck on upload"
    )

    assert messages_of(response) == [
        ("success", "Forced interrupt requested for 1 execution; 1 already finished.")
    ]
    live.refresh_from_db()
    assert live.interrupt_force is True
    requests = [r.snapshot() for r in live.interrupt_requests.all()]
    assert [(r["by"], r["force"], r["reason"]) for r in requests] == [
        (None, False, ""),
        ("ada", True, "stuck on upload"),
    ]


def test_action_offered_only_with_interrupt_permission(operator, viewer):
    running()

    with_permission = operator.get(CHANGELIST)
    without_permission = viewer.get(CHANGELIST)

    assert "Interrupt selected executions" in with_permission.content.decode()
    assert "Interrupt selected executions" not in without_permission.content.decode()


def test_action_posted_without_permission_changes_nothing(viewer):
    execution = running()

    run_action(viewer, execution)

    execution.refresh_from_db()
    assert execution.status == Status.RUNNING
    assert execution.interrupt_requested_at is None


# -- the per-object Interrupt button -------------------------------------------


def test_button_interrupts_running_execution(operator, interrupter):
    execution = running()

    response = operator.post(interrupt_url(execution), {"reason": "maintenance window"})

    assert response.status_code == 302
    assert response.url == change_url(execution)
    assert messages_of(response) == [
        (
            "success",
            f"{short(execution)}: Interrupt requested: "
            "the execution stops at its next safe point.",
        )
    ]
    execution.refresh_from_db()
    assert execution.status == Status.INTERRUPTING
    assert execution.interrupt_source == "admin"
    assert execution.interrupt_requested_by == interrupter
    assert execution.interrupt_reason == "maintenance window"
    assert execution.interrupt_force is False


def test_button_interrupts_queued_execution(operator):
    execution = queued()

    response = operator.post(interrupt_url(execution))

    assert messages_of(response) == [
        (
            "success",
            f"{short(execution)}: Interrupted before it started: no step ran.",
        )
    ]
    execution.refresh_from_db()
    assert execution.status == Status.INTERRUPTED


def test_button_force_escalates_pending_interrupt(operator):
    execution = running()
    services.request_interrupt(execution.pk, source="cli")

    response = operator.post(interrupt_url(execution), {"force": "on"})

    assert messages_of(response) == [
        (
            "success",
            f"{short(execution)}: Force requested: "
            "steps in flight are being cancelled.",
        )
    ]
    execution.refresh_from_db()
    assert execution.status == Status.INTERRUPTING
    assert execution.interrupt_force is True


def test_button_get_not_allowed(operator):
    execution = running()

    response = operator.get(interrupt_url(execution))

    assert response.status_code == 405
    execution.refresh_from_db()
    assert execution.status == Status.RUNNING


def test_button_without_permission_forbidden(viewer):
    execution = running()

    response = viewer.post(interrupt_url(execution))

    assert response.status_code == 403
    execution.refresh_from_db()
    assert execution.status == Status.RUNNING
    assert execution.interrupt_requested_at is None


def test_button_on_finished_execution_warns(operator):
    execution = finished()

    response = operator.post(interrupt_url(execution))

    assert response.status_code == 302
    assert messages_of(response) == [
        (
            "warning",
            f"Execution {execution.pk} is not running: it is succeeded.",
        )
    ]
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert execution.interrupt_requested_at is None


def test_button_rejects_overlong_reason(operator):
    execution = running()

    response = operator.post(interrupt_url(execution), {"reason": "x" * 2001})

    assert messages_of(response) == [
        (
            "error",
            "Not interrupted: Ensure this value has at most 2000 characters "
            "(it has 2001).",
        )
    ]
    execution.refresh_from_db()
    assert execution.status == Status.RUNNING


def test_button_unknown_execution_not_found(operator):
    missing = Execution(pk=uuid.UUID(int=0))

    response = operator.post(interrupt_url(missing))

    assert response.status_code == 404


def test_change_page_offers_interrupt_then_force(operator):
    execution = running()
    form = f'action="{interrupt_url(execution)}"'

    before = operator.get(change_url(execution)).content.decode()
    services.request_interrupt(execution.pk, source="cli")
    pending = operator.get(change_url(execution)).content.decode()
    services.request_interrupt(execution.pk, source="cli", force=True)
    forced = operator.get(change_url(execution)).content.decode()

    assert form in before
    assert ">Interrupt</button>" in before
    assert "Force interrupt</button>" not in before
    assert "Force interrupt</button>" in pending
    assert form not in forced


def test_change_page_hides_button_without_permission_or_when_finished(operator, viewer):
    active, done = running(), finished()

    for_viewer = viewer.get(change_url(active)).content.decode()
    for_finished = operator.get(change_url(done)).content.decode()

    assert interrupt_url(active) not in for_viewer
    assert interrupt_url(done) not in for_finished


# -- changelist and change page ------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [{"status__exact": "interrupting"}, {"interrupt_source__exact": "api"}],
)
def test_changelist_filters(viewer, query):
    wanted = running()
    running()
    queued()
    services.request_interrupt(wanted.pk, source="api")

    response = viewer.get(CHANGELIST, query)

    assert list(response.context["cl"].result_list) == [wanted]


@pytest.mark.parametrize(
    "term",
    [lambda e: str(e.pk), lambda e: f" {e.pk.hex.upper()} ", short],
    ids=["uuid", "hex-upper", "short"],
)
def test_changelist_search_finds_execution_by_id(viewer, term):
    wanted = queued()
    queued()

    response = viewer.get(CHANGELIST, {"q": term(wanted)})

    assert list(response.context["cl"].result_list) == [wanted]


def test_changelist_search_finds_by_cmd(viewer):
    executions = [queued(), queued()]

    response = viewer.get(CHANGELIST, {"q": "demo.steps"})

    assert set(response.context["cl"].result_list) == set(executions)


def test_changelist_shows_status_progress_and_interrupter(viewer, interrupter):
    execution = running()
    steps = [dict(step) for step in execution.steps]
    steps[0]["status"] = "succeeded"
    execution.save_steps(steps)
    services.request_interrupt(execution.pk, user=interrupter, source="admin")

    content = viewer.get(CHANGELIST).content.decode()

    assert (
        '<span class="badge status-interrupting" '
        'title="asked to stop: no new step starts">interrupting</span>'
    ) in content
    assert "1 / 5 · 20 %" in content
    assert "ada (Admin)" in content
    assert '<a href="/executions/">Live list</a>' in content
    assert "/static/executions/badges.css" in content


def test_change_page_shows_steps_outcome_and_live_link(viewer):
    execution = running()
    steps = [dict(step) for step in execution.steps]
    steps[0].update(status="succeeded", message="tick 10 of 10")
    steps[1].update(status="failed", error="disk full")
    execution.finish(
        Status.FAILED,
        outcome={
            "kind": "failed",
            "steps_processed": ["step-1"],
            "steps_not_processed": ["step-2", "step-3", "step-4", "step-5"],
            "errors": {"step-2": "disk full"},
        },
        steps=steps,
    )

    content = viewer.get(change_url(execution)).content.decode()

    assert (
        "<td><code>step-1</code></td><td>Step 1 of 5</td><td>"
        '<span class="badge status-succeeded" title="done">succeeded</span></td>'
    ) in content
    assert "<td>tick 10 of 10</td>" in content
    assert "<td>disk full</td></tr>" in content
    assert '<dt>Kind</dt><dd><span class="badge status-failed"' in content
    assert "<dt>Processed (1)</dt><dd>step-1</dd>" in content
    assert "<dd>step-2, step-3, step-4, step-5</dd>" in content
    assert "<li><code>step-2</code>: disk full</li>" in content
    assert f'<a href="/executions/{execution.pk}/">' in content


def test_change_page_escapes_step_text(viewer):
    execution = running()
    steps = [dict(step) for step in execution.steps]
    steps[0]["message"] = "<script>alert('x')</script>"
    execution.save_steps(steps)

    content = viewer.get(change_url(execution)).content.decode()

    assert "<script>alert" not in content
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in content


# -- read-only: no add, no edit, no deleting an active execution ---------------


def test_add_not_offered(superuser_client):
    response = superuser_client.get(reverse("admin:executions_execution_add"))

    assert response.status_code == 403
    assert reverse("admin:executions_execution_add") not in (
        superuser_client.get(CHANGELIST).content.decode()
    )


def test_change_page_post_changes_nothing(superuser_client):
    execution = running()

    response = superuser_client.post(
        change_url(execution), {"status": "succeeded", "cmd": "other"}
    )

    assert response.status_code == 403
    execution.refresh_from_db()
    assert (execution.status, execution.cmd) == (Status.RUNNING, "demo.steps")


def test_delete_refused_while_active(make_user, login):
    user = make_user("view", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="delete_execution"))
    client = login(user)
    active, done = running(), finished()

    refused = client.post(
        reverse("admin:executions_execution_delete", args=[active.pk]),
        {"post": "yes"},
    )
    allowed = client.post(
        reverse("admin:executions_execution_delete", args=[done.pk]), {"post": "yes"}
    )

    assert refused.status_code == 403
    assert allowed.status_code == 302
    assert list(Execution.objects.all()) == [active]
