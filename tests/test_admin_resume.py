"""The admin's resume doors (executions/admin.py): the "Resume selected
executions" action and the change page's Resume button."""

from __future__ import annotations

import time
import uuid

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from executions.models import Execution, Source, Status
from tests.factories import execution, table

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:executions_execution_changelist")
RESUMABLE = [Status.INTERRUPTED, Status.FAILED, Status.LOST]
NOT_RESUMABLE = [Status.QUEUED, Status.RUNNING, Status.INTERRUPTING, Status.SUCCEEDED]


def change_url(execution_id) -> str:
    return reverse("admin:executions_execution_change", args=[execution_id])


def resume_url(execution_id) -> str:
    return reverse("admin:executions_execution_resume", args=[execution_id])


def short(execution: Execution) -> str:
    return str(execution.pk)[:8]


def link(execution: Execution) -> str:
    return f'<a href="{change_url(execution.pk)}">{short(execution)}</a>'


def run_action(client: Client, *executions: Execution):
    return client.post(
        CHANGELIST,
        {
            "action": "resume_selected",
            "_selected_action": [str(execution.pk) for execution in executions],
        },
    )


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m.message)) for m in get_messages(response.wsgi_request)]


def resumed_from(original: Execution) -> Execution:
    return Execution.objects.get(resumed_from=original)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def starter(make_user):
    return make_user("view", "add", is_staff=True, username="grace")


@pytest.fixture
def operator(starter):
    client = Client()
    client.force_login(starter)
    return client


@pytest.fixture
def viewer(make_user):
    client = Client()
    client.force_login(make_user("view", "interrupt", is_staff=True))
    return client


# -- the "Resume selected executions" action -------------------------------------


def test_resume_action_resumes_interrupted_failed_and_lost(operator, starter):
    originals = [execution(status, strategy="poll-next-n:1") for status in RESUMABLE]

    response = run_action(operator, *originals)

    assert response.status_code == 302
    resumed = [resumed_from(original) for original in originals]
    newest_first = reversed(list(zip(originals, resumed, strict=True)))
    assert messages_of(response) == [
        (
            "success",
            "Resumed "
            + ", ".join(f"{short(old)} as {link(new)}" for old, new in newest_first)
            + ".",
        )
    ]
    for original, new in zip(originals, resumed, strict=True):
        assert (new.cmd, new.params, new.strategy) == (
            original.cmd,
            original.params,
            "poll-next-n:1",
        )
        assert (new.created_by, new.created_from) == (starter, Source.ADMIN)
        assert new.status == Status.QUEUED


def test_resume_action_leaves_the_originals_as_they_were(operator):
    originals = [execution(status) for status in RESUMABLE]
    before = [row for row in table() if row["resumed_from_id"] is None]

    run_action(operator, *originals)

    after = [row for row in table() if row["resumed_from_id"] is None]
    assert after == before


def test_resume_action_refuses_what_cannot_be_resumed(operator):
    refused = [execution(status) for status in NOT_RESUMABLE]
    before = table()

    response = run_action(operator, *refused)

    listed = ", ".join(
        f"{short(row)} ({row.status})" for row in reversed(refused)
    )  # the changelist's order: newest first
    assert messages_of(response) == [
        (
            "warning",
            f"Not resumable: {listed}. "
            "Only interrupted, failed or lost executions can be resumed.",
        )
    ]
    assert table() == before


def test_resume_action_reports_both_in_a_mixed_selection(operator):
    interrupted, succeeded = execution(Status.INTERRUPTED), execution(Status.SUCCEEDED)

    response = run_action(operator, interrupted, succeeded)

    new = resumed_from(interrupted)
    assert messages_of(response) == [
        ("success", f"Resumed {short(interrupted)} as {link(new)}."),
        (
            "warning",
            f"Not resumable: {short(succeeded)} (succeeded). "
            "Only interrupted, failed or lost executions can be resumed.",
        ),
    ]
    assert Execution.objects.count() == 3


def test_resume_action_for_a_busy_profile_resumes_one(operator):
    first = execution(Status.INTERRUPTED, profile="staging")
    second = execution(Status.FAILED, profile="staging")

    response = run_action(operator, first, second)

    # Newest first: the failed one is resumed, then the profile is busy.
    new = resumed_from(second)
    assert messages_of(response) == [
        (
            "warning",
            f"Not resumed: profile “staging” is busy with {link(new)} (queued).",
        ),
        ("success", f"Resumed {short(second)} as {link(new)}."),
    ]
    assert not Execution.objects.filter(resumed_from=first).exists()


def test_resume_action_keeps_files_sync_inside_the_roots(operator, settings, tmp_path):
    (tmp_path / "src").mkdir()
    settings.EXECUTIONS_FILES_ROOTS = [str(tmp_path)]
    # Started in a terminal, which is not limited; the admin is.
    original = execution(
        Status.INTERRUPTED,
        cmd="files.sync",
        params={"src": str(tmp_path / "src"), "dest": "/elsewhere"},
    )
    before = table()

    response = run_action(operator, original)

    assert messages_of(response) == [
        (
            "error",
            f"Not resumed {short(original)}: "
            "dest: must be inside one of the allowed roots",
        )
    ]
    assert table() == before


def test_resume_action_offered_only_with_add_permission(operator, viewer):
    execution(Status.INTERRUPTED)

    with_permission = operator.get(CHANGELIST).content.decode()
    without_permission = viewer.get(CHANGELIST).content.decode()

    assert '<option value="resume_selected">' in with_permission
    assert "Resume selected executions" in with_permission
    assert "Resume selected executions" not in without_permission


def test_resume_action_posted_without_add_permission_changes_nothing(viewer):
    interrupted = execution(Status.INTERRUPTED)
    before = table()

    response = run_action(viewer, interrupted)

    assert messages_of(response) == [("warning", "No action selected.")]
    assert table() == before


# -- the change page's Resume button ---------------------------------------------


def test_button_resumes_and_goes_to_the_new_execution(operator, starter):
    original = execution(Status.INTERRUPTED)

    response = operator.post(resume_url(original.pk))

    new = resumed_from(original)
    assert response.status_code == 302
    assert response.url == change_url(new.pk)
    assert messages_of(response) == [
        (
            "success",
            f"Resumed {short(original)} as {link(new)}: "
            "the steps that succeeded there are not run again.",
        )
    ]
    assert (new.created_by, new.created_from) == (starter, Source.ADMIN)
    assert (new.cmd, new.params) == (original.cmd, original.params)


@pytest.mark.parametrize("status", NOT_RESUMABLE)
def test_button_on_an_execution_that_cannot_be_resumed_warns(operator, status):
    refused = execution(status)
    before = table()

    response = operator.post(resume_url(refused.pk))

    assert response.status_code == 302
    assert response.url == change_url(refused.pk)
    assert messages_of(response) == [
        (
            "warning",
            f"Execution {refused.pk} cannot be resumed: it is {status}; "
            "only interrupted, failed or lost executions can.",
        )
    ]
    assert table() == before


def test_button_for_a_busy_profile_goes_to_the_active_one(operator):
    original = execution(Status.FAILED, profile="staging")
    active = execution(Status.RUNNING, profile="staging")
    before = table()

    response = operator.post(resume_url(original.pk))

    assert response.url == change_url(active.pk)
    assert messages_of(response) == [
        (
            "warning",
            f"Not resumed: profile “staging” is busy with {link(active)} (running).",
        )
    ]
    assert table() == before


def test_button_keeps_files_sync_inside_the_roots(operator, settings, tmp_path):
    (tmp_path / "src").mkdir()
    settings.EXECUTIONS_FILES_ROOTS = []
    original = execution(
        Status.FAILED,
        cmd="files.sync",
        params={"src": str(tmp_path / "src"), "dest": str(tmp_path / "dest")},
    )
    before = table()

    response = operator.post(resume_url(original.pk))

    assert response.url == change_url(original.pk)
    assert messages_of(response) == [
        (
            "error",
            "Not resumed: src: files.sync is not allowed here: "
            "no EXECUTIONS_FILES_ROOTS",
        )
    ]
    assert table() == before


@pytest.mark.parametrize("actions", [("view",), ("add",)])
def test_button_without_view_and_add_permission_is_forbidden(make_user, actions):
    client = Client()
    client.force_login(make_user(*actions, is_staff=True))
    original = execution(Status.INTERRUPTED)
    before = table()

    response = client.post(resume_url(original.pk))

    assert response.status_code == 403
    assert table() == before


def test_button_get_not_allowed(operator):
    original = execution(Status.INTERRUPTED)

    response = operator.get(resume_url(original.pk))

    assert response.status_code == 405
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("execution_id", [str(uuid.UUID(int=0)), "not-a-uuid"])
def test_button_unknown_or_malformed_id_is_not_found(operator, execution_id):
    response = operator.post(resume_url(execution_id))

    assert response.status_code == 404
    assert not Execution.objects.exists()


@pytest.mark.parametrize("status", RESUMABLE)
def test_change_page_offers_resume_when_resumable(operator, status):
    original = execution(status)

    content = operator.get(change_url(original.pk)).content.decode()

    assert f'action="{resume_url(original.pk)}" id="execution-resume-form"' in content
    assert '<button type="submit" class="button">Resume</button>' in content


@pytest.mark.parametrize("status", NOT_RESUMABLE)
def test_change_page_hides_resume_when_not_resumable(operator, status):
    refused = execution(status)

    content = operator.get(change_url(refused.pk)).content.decode()

    assert 'id="execution-resume-form"' not in content


def test_change_page_hides_resume_without_add_permission(viewer):
    original = execution(Status.INTERRUPTED)

    content = viewer.get(change_url(original.pk)).content.decode()

    assert 'id="execution-resume-form"' not in content


# -- a real run ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_button_resumed_run_skips_the_steps_that_succeeded(operator):
    original = execution(Status.INTERRUPTED, succeeded=1)

    operator.post(resume_url(original.pk))
    new = resumed_from(original)
    deadline = time.monotonic() + 20
    while not new.is_finished and time.monotonic() < deadline:
        time.sleep(0.05)
        new.refresh_from_db()

    assert new.status == Status.SUCCEEDED
    assert [step["status"] for step in new.steps] == ["succeeded"] * 3
    assert new.steps[0]["started_at"] is None  # not run again
    assert new.steps[1]["started_at"] is not None
    assert new.outcome["steps_processed"] == ["step-1", "step-2", "step-3"]
