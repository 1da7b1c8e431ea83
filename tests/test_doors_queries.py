"""The interrupt path from each door stays short: the queries one interrupt
of a running execution costs, and (websocket) the thread hops it takes. And
the lists: what a door that lists executions costs does not grow with the
interrupted rows it shows (their requests are read in one go).

The counts are the whole request's: the session and the user (Django's own
middleware), the permissions (one query on the user's cold permission cache,
for their own and their groups'; the socket's re-check reads all three in
one), the conditional UPDATE that records the request, the audit row, and
what the door itself shows after (the admin's changelist). A new query on the path is
a failure here, so that it is a decision, not an accident."""

from __future__ import annotations

import json

import pytest
from channels.db import DatabaseSyncToAsync, database_sync_to_async
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from executions import consumers, services
from executions.models import Execution, InterruptRequest, Source, Status
from tests import factories
from tests.sockets import receive, socket

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def running() -> Execution:
    execution = services.start_execution(
        "demo.steps", {"count": 2, "seconds": 30}, source=Source.CLI, dispatch=False
    ).execution
    assert execution.claim("test-runner")
    return execution


def interrupted(execution: Execution) -> tuple[str, int]:
    row = Execution.objects.get(pk=execution.pk)
    return row.status, InterruptRequest.objects.filter(execution=execution).count()


@pytest.mark.django_db
def test_service_interrupt_of_a_running_execution_queries(
    make_user, django_assert_max_num_queries
):
    user = make_user("view", "interrupt")
    execution = running()

    # permissions, UPDATE ... RETURNING, INSERT the audit row
    with django_assert_max_num_queries(3):
        result = services.request_interrupt(execution.pk, user=user, source="api")

    assert result.result == services.Interruption.REQUESTED
    assert (
        result.execution.snapshot() == Execution.objects.get(pk=execution.pk).snapshot()
    )
    assert interrupted(execution) == (Status.INTERRUPTING, 1)


@pytest.mark.django_db
def test_api_interrupt_of_a_running_execution_queries(
    make_user, django_assert_max_num_queries
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("view", "interrupt"))
    client.get(reverse("executions:api-list"))  # the CSRF cookie
    execution = running()

    # session, user, permissions, UPDATE ... RETURNING, INSERT
    with django_assert_max_num_queries(5):
        response = client.post(
            f"/api/executions/{execution.pk}/interrupt/",
            json.dumps({"reason": "enough"}),
            content_type="application/json",
            headers={"X-CSRFToken": client.cookies["csrftoken"].value},
        )

    assert response.status_code == 202
    assert response.json() == Execution.objects.get(pk=execution.pk).snapshot()
    assert interrupted(execution) == (Status.INTERRUPTING, 1)


@pytest.mark.django_db
def test_admin_button_interrupt_of_a_running_execution_queries(
    make_user, django_assert_max_num_queries
):
    client = Client()
    client.force_login(make_user("view", "interrupt", is_staff=True))
    execution = running()
    url = reverse("admin:executions_execution_interrupt", args=[execution.pk])

    # session, user, permissions, UPDATE ... RETURNING, INSERT (the message
    # goes in a cookie)
    with django_assert_max_num_queries(5):
        response = client.post(url, {"reason": "enough"})

    assert response.status_code == 302
    assert interrupted(execution) == (Status.INTERRUPTING, 1)


@pytest.mark.django_db
def test_admin_action_interrupt_of_a_running_execution_queries(
    make_user, django_assert_max_num_queries
):
    client = Client()
    client.force_login(make_user("view", "interrupt", is_staff=True))
    execution = running()
    changelist = reverse("admin:executions_execution_changelist")

    # session, user, permissions, the changelist's two counts and its SELECT
    # of the selected rows (Django's), UPDATE ... RETURNING, INSERT
    with django_assert_max_num_queries(8):
        response = client.post(
            changelist,
            {
                "action": "interrupt_selected",
                "_selected_action": str(execution.pk),
                "index": "0",
                "select_across": "0",
            },
        )

    assert response.status_code == 302
    assert interrupted(execution) == (Status.INTERRUPTING, 1)


@pytest.mark.django_db(transaction=True)
async def test_websocket_interrupt_of_a_running_execution_queries_and_hops(
    make_user, monkeypatch
):
    user = await database_sync_to_async(make_user)("view", "interrupt")
    execution = await database_sync_to_async(running)()
    hops = []
    thread_handler = DatabaseSyncToAsync.thread_handler

    def counted(self, loop, *args, **kwargs):
        hops.append(self.func)
        return thread_handler(self, loop, *args, **kwargs)

    async with socket(f"/ws/executions/{execution.pk}/", user) as (communicator, _):
        await receive(communicator)  # the snapshot
        # The thread every database_sync_to_async call runs in, and its
        # connection: the one to count on.
        queries = await database_sync_to_async(
            lambda: CaptureQueriesContext(connections["default"])
        )()
        await database_sync_to_async(queries.__enter__)()
        monkeypatch.setattr(DatabaseSyncToAsync, "thread_handler", counted)

        await communicator.send_json_to({"type": "interrupt", "reason": "enough"})
        reply = await receive(communicator)

        monkeypatch.undo()
        await database_sync_to_async(queries.__exit__)(None, None, None)

    assert reply["type"] == "interrupt"
    assert reply["result"] == "requested"
    assert reply["execution"]["status"] == "interrupting"
    assert await database_sync_to_async(interrupted)(execution) == (
        Status.INTERRUPTING,
        1,
    )
    # the session with its user and their permissions, UPDATE ... RETURNING,
    # INSERT
    assert len(queries) <= 3, [query["sql"] for query in queries]
    assert len(hops) == 1


def _list_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connections["default"]) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/executions/",
        "/executions/",
        "/admin/executions/execution/",
    ],
)
def test_a_list_reads_its_rows_interrupt_requests_in_one_go(make_user, url):
    client = Client()
    client.force_login(make_user("view", is_staff=True))
    factories.execution(Status.INTERRUPTED)
    factories.execution(Status.SUCCEEDED)
    client.get(url)  # warm: the content types, the permissions
    one = _list_queries(client, url)
    for _ in range(4):
        factories.execution(Status.INTERRUPTED)
        factories.execution(Status.INTERRUPTING)

    assert _list_queries(client, url) == one


@pytest.mark.django_db
def test_the_list_sockets_snapshot_reads_the_requests_in_one_go(make_user):
    user = make_user("view")
    rows = [factories.execution(Status.INTERRUPTED) for _ in range(3)]
    list_snapshot = consumers._list_snapshot.func

    # the permissions, the rows, their requests
    with CaptureQueriesContext(connections["default"]) as queries:
        snapshots = list_snapshot(user)

    assert len(queries) == 3, [query["sql"] for query in queries]
    assert snapshots == [
        Execution.objects.get(pk=row.pk).snapshot() for row in reversed(rows)
    ]
    assert all(len(s["interrupt"]["requests"]) == 1 for s in snapshots)
