"""The Execution state machine: every transition a compare-and-set, terminal
states final, and at most one active execution per profile."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from executions import services
from executions.engine import StepState, StepStatus
from executions.models import Execution, InterruptRequest, LogLine, Source, Status
from executions.returning import instance as instance_from_row

pytestmark = pytest.mark.django_db

LOST = "lost: its supervisor stopped heartbeating"


def step(step_id: str, status: str = "pending") -> dict:
    return StepState(id=step_id, title=step_id, status=StepStatus(status)).to_dict()


def make_execution(**fields) -> Execution:
    values = {
        "cmd": "demo.steps",
        "title": "Demo",
        "created_from": Source.CLI,
        "steps": [step("a"), step("b")],
        **fields,
    }
    return Execution.objects.create(**values)


def running(**fields) -> Execution:
    execution = make_execution(**fields)
    assert execution.claim("runner-1")
    return execution


def fresh(execution: Execution) -> Execution:
    return Execution.objects.get(pk=execution.pk)


# -- claim -----------------------------------------------------------------------------


def test_claim_moves_queued_to_running_once():
    execution = make_execution()

    first = execution.claim("runner-1")
    second = fresh(execution).claim("runner-2")

    row = fresh(execution)
    assert (first, second) == (True, False)
    assert (row.status, row.supervisor) == (Status.RUNNING, "runner-1")
    assert row.started_at is not None
    assert row.heartbeat_at == row.started_at


# -- record_interrupt ------------------------------------------------------------------


def test_record_interrupt_of_queued_interrupts_it_with_nothing_processed(make_user):
    execution = make_execution()
    alice = make_user(username="alice")

    result = execution.record_interrupt(source=Source.WEB, user=alice, reason="oops")

    row = fresh(execution)
    assert result == "interrupted"
    assert row.status == Status.INTERRUPTED
    assert row.finished_at is not None
    assert row.outcome == {
        "kind": "interrupted",
        "steps_processed": [],
        "steps_not_processed": ["a", "b"],
        "errors": {},
    }
    assert [s["status"] for s in row.steps] == ["skipped", "skipped"]
    assert row.interrupt_snapshot()["by"] == "alice"


def test_record_interrupt_of_running_asks_it_to_stop():
    execution = running()

    result = execution.record_interrupt(source=Source.CLI, by_name="ops@box")

    row = fresh(execution)
    assert result == "requested"
    assert row.status == Status.INTERRUPTING
    assert row.interrupt_requested_by_name == "ops@box"
    assert (row.interrupt_source, row.interrupt_force) == (Source.CLI, False)
    assert row.finished_at is None
    assert execution.status == Status.INTERRUPTING


def test_record_interrupt_a_second_time_is_already_and_keeps_the_first():
    execution = running()
    execution.record_interrupt(source=Source.CLI, reason="first")
    before = fresh(execution)

    result = execution.record_interrupt(source=Source.API, reason="second")

    row = fresh(execution)
    assert result == "already"
    assert row.interrupt_requested_at == before.interrupt_requested_at
    assert (row.interrupt_source, row.interrupt_reason) == (Source.CLI, "first")


def test_record_interrupt_force_escalates_a_pending_request():
    execution = running()
    execution.record_interrupt(source=Source.WEB)

    escalated = execution.record_interrupt(source=Source.CLI, force=True)
    again = execution.record_interrupt(source=Source.CLI, force=True)

    row = fresh(execution)
    assert (escalated, again) == ("escalated", "already")
    assert (row.status, row.interrupt_force) == (Status.INTERRUPTING, True)
    assert row.interrupt_source == Source.WEB


def test_record_interrupt_with_force_first_is_a_forced_request():
    execution = running()

    result = execution.record_interrupt(source=Source.CLI, force=True)

    assert result == "requested"
    assert fresh(execution).interrupt_force


# -- interrupt requests, read in one go ----------------------------------------------


def requested(*sources: str, **fields) -> Execution:
    """A running execution asked to stop once per source (the later ones
    forced), read back without its requests."""
    execution = running(**fields)
    for index, source in enumerate(sources):
        execution.record_interrupt(source=source, force=index > 0)
    return fresh(execution)


def test_attach_reads_the_requests_of_many_rows_in_one_statement(
    django_assert_num_queries,
):
    rows = [requested(Source.WEB, Source.CLI), requested(Source.API), running()]
    rows[2] = fresh(rows[2])

    with django_assert_num_queries(1):
        InterruptRequest.attach(rows)
    with django_assert_num_queries(0):
        snapshots = [row.snapshot() for row in rows]

    assert snapshots == [fresh(row).snapshot() for row in rows]
    sources = [[r["source"] for r in s["interrupt"]["requests"]] for s in snapshots[:2]]
    assert sources == [[Source.WEB, Source.CLI], [Source.API]]
    assert snapshots[2]["interrupt"] is None
    request = rows[0].requests()[0]
    with django_assert_num_queries(0):
        assert request.execution is rows[0]


def test_attach_reads_nothing_for_rows_without_requests_or_read_already(
    django_assert_num_queries,
):
    asked = requested(Source.WEB)
    prefetched = Execution.objects.prefetch_related("interrupt_requests").get(
        pk=requested(Source.API).pk
    )
    never = fresh(running())
    InterruptRequest.attach([asked])

    with django_assert_num_queries(0):
        InterruptRequest.attach([never, asked, prefetched])
        InterruptRequest.attach([])
        assert never.snapshot()["interrupt"] is None
    assert [r.source for r in prefetched.requests()] == [Source.API]


def test_attach_reads_in_chunks(monkeypatch, django_assert_num_queries):
    monkeypatch.setattr("executions.models.REQUESTS_CHUNK", 2)
    rows = [requested(Source.WEB, Source.API) for _ in range(5)]

    with django_assert_num_queries(3):
        InterruptRequest.attach(rows)

    assert [len(row.requests()) for row in rows] == [2] * 5


def test_one_rows_snapshot_reads_its_requests_once(django_assert_num_queries):
    row = requested(Source.WEB)

    with django_assert_num_queries(1):
        first = row.snapshot()
        second = row.snapshot()

    assert first == second
    assert first["interrupt"]["requests"][0]["source"] == Source.WEB


def test_a_new_request_is_shown_by_the_instance_that_recorded_it():
    execution = requested(Source.WEB)
    assert len(execution.snapshot()["interrupt"]["requests"]) == 1

    assert execution.record_interrupt(source=Source.CLI, force=True) == "escalated"

    requests = execution.snapshot()["interrupt"]["requests"]
    assert [r["source"] for r in requests] == [Source.WEB, Source.CLI]
    assert execution.snapshot() == fresh(execution).snapshot()


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.LOST])
def test_record_interrupt_of_finished_changes_nothing(status):
    execution = running()
    execution.finish(status, outcome={"kind": "complete"}, steps=[])

    result = execution.record_interrupt(source=Source.API, force=True)

    row = fresh(execution)
    assert result == "not_running"
    assert row.status == status
    assert row.interrupt_requested_at is None
    assert row.interrupt_snapshot() is None


# -- record_interrupt_of_running -------------------------------------------------------


def test_record_interrupt_of_running_returns_the_row_as_it_now_stands(make_user):
    execution = running()
    alice = make_user(username="alice")

    returned = Execution.record_interrupt_of_running(
        execution.pk, source=Source.API, user=alice, force=True, reason="oops"
    )

    row = fresh(execution)
    assert row.status == Status.INTERRUPTING
    assert (row.interrupt_requested_by, row.interrupt_force) == (alice, True)
    assert (row.interrupt_source, row.interrupt_reason) == (Source.API, "oops")
    assert returned.snapshot() == row.snapshot()
    assert [request.by_name for request in row.interrupt_requests.all()] == ["alice"]


def test_record_interrupt_of_running_tells_as_soon_as_the_row_holds_it():
    """The push to the supervisor waits for the row, not for the audit."""
    execution = running()
    seen = []

    def recorded() -> None:
        row = fresh(execution)
        seen.append((row.status, row.interrupt_force, row.interrupt_requests.count()))

    Execution.record_interrupt_of_running(
        execution.pk, source=Source.API, force=True, recorded=recorded
    )

    assert seen == [(Status.INTERRUPTING, True, 0)]
    assert fresh(execution).interrupt_requests.count() == 1


@pytest.mark.parametrize(
    "state", ["queued", "requested", Status.SUCCEEDED, Status.INTERRUPTED, "gone"]
)
def test_record_interrupt_of_running_changes_nothing_in_any_other_case(state):
    execution = make_execution() if state == "queued" else running()
    if state == "requested":
        execution.record_interrupt(source=Source.CLI)
    elif state in (Status.SUCCEEDED, Status.INTERRUPTED):
        execution.finish(state, outcome={"kind": "complete"}, steps=[])
    elif state == "gone":
        Execution.objects.filter(pk=execution.pk).delete()
    before = list(Execution.objects.values())

    returned = Execution.record_interrupt_of_running(execution.pk, source=Source.API)

    assert returned is None
    assert list(Execution.objects.values()) == before
    assert execution.interrupt_requests.count() == (state == "requested")


def test_record_interrupt_of_running_leaves_a_database_without_returning_alone(
    monkeypatch,
):
    execution = running()
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)

    returned = Execution.record_interrupt_of_running(execution.pk, source=Source.API)

    assert returned is None
    assert fresh(execution).status == Status.RUNNING


# -- record_delivered ------------------------------------------------------------------


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "no-returning"])
def test_record_delivered_returns_the_row_as_it_then_stands(returning, monkeypatch):
    execution = running()
    execution.record_interrupt(source=Source.WEB, reason="enough")
    if not returning:
        monkeypatch.setattr(
            connection.features, "can_return_columns_from_insert", False
        )

    row = Execution.record_delivered(execution.pk)

    assert row.status == Status.INTERRUPTING
    assert row.interrupt_delivered_at is not None
    assert row.snapshot() == fresh(execution).snapshot()
    assert row.snapshot()["interrupt"]["requests"][0]["reason"] == "enough"


def test_record_delivered_and_its_snapshot_are_two_statements(
    django_assert_num_queries,
):
    execution = running()
    execution.record_interrupt(source=Source.WEB)

    with django_assert_num_queries(2):  # the write and the row; the requests
        Execution.record_delivered(execution.pk).snapshot()


def test_record_delivered_records_once():
    execution = running()
    execution.record_interrupt(source=Source.WEB)
    first = Execution.record_delivered(execution.pk)
    before = list(Execution.objects.values())

    second = Execution.record_delivered(execution.pk)

    assert first is not None
    assert second is None
    assert list(Execution.objects.values()) == before


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "no-returning"])
def test_record_delivered_of_an_ended_or_unknown_run_changes_nothing(
    returning, monkeypatch
):
    execution = make_execution()
    execution.record_interrupt(source=Source.WEB)  # queued: interrupted at once
    if not returning:
        monkeypatch.setattr(
            connection.features, "can_return_columns_from_insert", False
        )
    before = list(Execution.objects.values())

    ended = Execution.record_delivered(execution.pk)
    unknown = Execution.record_delivered("00000000-0000-0000-0000-000000000000")

    assert (ended, unknown) == (None, None)
    assert list(Execution.objects.values()) == before


# -- finish, and terminal states being final -------------------------------------------


def test_finish_ends_a_running_execution_with_its_outcome():
    execution = running()
    outcome = {"kind": "complete", "steps_processed": ["a", "b"]}

    finished = execution.finish(
        Status.SUCCEEDED, outcome=outcome, steps=[step("a", "succeeded")]
    )

    row = fresh(execution)
    assert finished
    assert (row.status, row.outcome) == (Status.SUCCEEDED, outcome)
    assert row.steps == [step("a", "succeeded")]
    assert row.finished_at is not None


def test_finish_of_an_interrupting_execution_is_allowed():
    execution = running()
    execution.record_interrupt(source=Source.CLI)

    finished = execution.finish(Status.INTERRUPTED, outcome={}, steps=[])

    assert finished
    assert fresh(execution).status == Status.INTERRUPTED


def test_finish_late_after_interrupted_changes_nothing():
    execution = make_execution()
    execution.record_interrupt(source=Source.WEB)
    before = fresh(execution)

    finished = execution.finish(
        Status.SUCCEEDED, outcome={"kind": "complete"}, steps=[step("a", "succeeded")]
    )

    row = fresh(execution)
    assert finished is False
    assert (row.status, row.outcome, row.steps) == (
        Status.INTERRUPTED,
        before.outcome,
        before.steps,
    )
    assert row.finished_at == before.finished_at


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "no-returning"])
def test_finish_and_read_returns_the_row_as_it_then_stands(returning, monkeypatch):
    execution = running()
    # Another writer's change the instance has not seen: the answer shows it.
    Execution.objects.filter(pk=execution.pk).update(interrupt_reason="late")
    if not returning:
        monkeypatch.setattr(
            connection.features, "can_return_columns_from_insert", False
        )
    outcome = {"kind": "complete", "steps_processed": ["a"]}

    row = execution.finish_and_read(
        Status.SUCCEEDED,
        outcome=outcome,
        steps=[step("a", "succeeded")],
        results={"a": {"n": 1}},
    )

    assert row.snapshot() == fresh(execution).snapshot()
    assert (row.status, row.outcome, row.results) == (
        Status.SUCCEEDED,
        outcome,
        {"a": {"n": 1}},
    )
    assert row.steps == [step("a", "succeeded")]
    assert row.interrupt_reason == "late"


def test_finish_and_read_of_a_finished_row_changes_nothing():
    execution = make_execution()
    execution.record_interrupt(source=Source.WEB)
    before = list(Execution.objects.values())

    row = execution.finish_and_read(Status.SUCCEEDED, outcome={}, steps=[])

    assert row is None
    assert list(Execution.objects.values()) == before


def test_finish_refuses_a_status_that_is_not_terminal():
    execution = running()

    with pytest.raises(ValueError) as error:
        execution.finish("running", outcome={}, steps=[])

    assert str(error.value) == "'running' is not a terminal status"
    assert fresh(execution).status == Status.RUNNING


def test_transitions_after_the_end_all_refuse():
    execution = running()
    execution.finish(Status.SUCCEEDED, outcome={}, steps=[step("a", "succeeded")])

    results = [
        execution.claim("runner-2"),
        execution.save_steps([step("a", "running")]),
        execution.mark_lost(),
    ]

    row = fresh(execution)
    assert results == [False, False, False]
    assert (row.status, row.supervisor) == (Status.SUCCEEDED, "runner-1")
    assert row.steps == [step("a", "succeeded")]


def test_save_steps_writes_only_while_running():
    queued = make_execution()
    live = running()

    results = [queued.save_steps([step("x")]), live.save_steps([step("x")])]

    assert results == [False, True]
    assert fresh(queued).steps == [step("a"), step("b")]
    assert fresh(live).steps == [step("x")]


# -- lost, and the reaper's query ------------------------------------------------------


def test_mark_lost_ends_a_running_execution_keeping_what_finished():
    execution = running(steps=[step("a", "succeeded"), step("b", "running"), step("c")])

    lost = execution.mark_lost()

    row = fresh(execution)
    assert lost
    assert row.status == Status.LOST
    assert [(s["status"], s["error"]) for s in row.steps] == [
        ("succeeded", None),
        ("interrupted", LOST),
        ("skipped", None),
    ]
    assert row.outcome == {
        "kind": "lost",
        "steps_processed": ["a"],
        "steps_not_processed": ["b", "c"],
        "errors": {},
    }


def test_mark_lost_ends_a_queued_execution_whose_creator_died():
    execution = make_execution()

    assert execution.mark_lost() is True
    row = fresh(execution)
    assert row.status == Status.LOST
    assert row.outcome["kind"] == "lost"
    assert [s["status"] for s in row.steps] == ["skipped", "skipped"]


def test_stale_finds_running_rows_whose_runner_went_quiet():
    quiet = running()
    interrupting = running()
    interrupting.record_interrupt(source=Source.CLI)
    never_beat = running()
    beating = running()
    old = timezone.now() - timedelta(seconds=60)
    Execution.objects.filter(pk__in=[quiet.pk, interrupting.pk]).update(
        heartbeat_at=old
    )
    Execution.objects.filter(pk=never_beat.pk).update(heartbeat_at=None)
    make_execution(heartbeat_at=old)
    finished = running()
    finished.finish(Status.SUCCEEDED, outcome={}, steps=[])
    Execution.objects.filter(pk=finished.pk).update(heartbeat_at=old)

    stale = set(Execution.objects.stale(15).values_list("pk", flat=True))

    assert stale == {quiet.pk, interrupting.pk, never_beat.pk}
    assert beating.pk not in stale


def test_queryset_filters_group_the_statuses():
    queued = make_execution()
    live = running()
    done = running()
    done.finish(Status.FAILED, outcome={}, steps=[])

    def ids(queryset):
        return set(queryset.values_list("pk", flat=True))

    assert ids(Execution.objects.active()) == {queued.pk, live.pk}
    assert ids(Execution.objects.running()) == {live.pk}
    assert ids(Execution.objects.finished()) == {done.pk}


# -- one active execution per profile --------------------------------------------------


def test_profile_constraint_refuses_a_second_active_row():
    make_execution(profile="staging")

    with pytest.raises(IntegrityError), transaction.atomic():
        make_execution(profile="staging")


def test_profile_constraint_ignores_finished_rows_and_no_profile():
    finished = running(profile="staging")
    finished.finish(Status.SUCCEEDED, outcome={}, steps=[])

    make_execution(profile="staging")
    make_execution(profile=None)
    make_execution(profile=None)

    assert Execution.objects.count() == 4


def start(profile: str | None = "staging") -> services.StartResult:
    return services.start_execution(
        "demo.steps", {"count": 2}, profile=profile, source=Source.CLI, dispatch=False
    )


@pytest.mark.django_db(transaction=True)
def test_profile_racing_starts_yield_one_execution():
    barrier = threading.Barrier(2, timeout=10)
    results: list[services.StartResult] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait()
            results.append(start())
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(result.created for result in results) == [False, True]
    assert results[0].execution.pk == results[1].execution.pk
    assert Execution.objects.filter(profile="staging").count() == 1


def test_profile_second_start_returns_the_active_execution():
    first = start()

    second = start()

    assert (first.created, second.created) == (True, False)
    assert second.execution.pk == first.execution.pk
    assert Execution.objects.count() == 1


def test_profile_is_free_again_once_its_execution_finished():
    first = start().execution
    first.claim("runner-1")
    first.finish(Status.SUCCEEDED, outcome={}, steps=[])

    second = start()

    assert second.created
    assert second.execution.pk != first.pk


def test_profile_none_never_blocks():
    results = [start(profile=None), start(profile="")]

    assert [result.created for result in results] == [True, True]
    assert [result.execution.profile for result in results] == [None, None]


# -- LogLine ---------------------------------------------------------------------


def log_lines(execution: Execution, *steps: str) -> None:
    for seq, step in enumerate(steps, start=1):
        LogLine.objects.create(
            execution=execution,
            seq=seq,
            step=step,
            at=execution.created_at,
            level="info",
            text=f"line {seq}",
        )


def test_log_line_snapshot_gives_the_run_level_log_as_null_step():
    execution = make_execution()
    log_lines(execution, "")

    assert LogLine.objects.get().snapshot()["step"] is None


def test_log_line_page_is_after_seq_of_one_step_bounded():
    execution = make_execution()
    log_lines(execution, "a", "b", "a", "a", "a")

    page = LogLine.objects.filter(execution=execution).page(step="a", after=1, size=2)

    assert [line.seq for line in page] == [3, 4]


def test_log_lines_go_with_their_execution():
    execution = make_execution()
    log_lines(execution, "a")

    execution.delete()

    assert not LogLine.objects.exists()


# -- what the runtime reads every interval: indexed, never a scan of history


def plan(queryset) -> str:
    """How the database would read `queryset`: SQLite's query plan, or
    PostgreSQL's with sequential scans priced out (so any usable index is
    taken, whatever the size of the test's table)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return "\n".join(row[-1] for row in cursor.fetchall())
        with transaction.atomic():
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())


def scans_the_table(text: str) -> bool:
    # SQLite: "SCAN executions_execution", even through an index (every row,
    # in that index's order); PostgreSQL: a sequential scan.
    return any(
        line.startswith("SCAN executions_execution")
        or "Seq Scan on executions_execution" in line
        for line in text.splitlines()
    )


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(
            lambda: Execution.objects.changed_since(timezone.now()).exclude(
                supervisor="server:here"
            ),
            id="relay",
        ),
        pytest.param(lambda: Execution.objects.next_queued("workers")[:10], id="poll"),
        pytest.param(lambda: Execution.objects.active(), id="active"),
        pytest.param(lambda: Execution.objects.stale(15.0), id="stale"),
    ],
)
def test_the_runtimes_periodic_reads_use_an_index(read):
    """The table keeps every run ever made; the server's relay, a worker's
    poll and the reaper read it every fraction of a second. A scan costs
    them in proportion to the history (the relay's was 5 ms a pass at 5,000
    rows, four passes a second): each must be a range of an index."""
    text = plan(read())

    assert not scans_the_table(text), text


def test_a_worker_poll_reads_its_queue_in_order_from_the_index():
    text = plan(Execution.objects.next_queued("workers")[:10])

    assert "TEMP B-TREE" not in text, text  # SQLite's sort
    assert "Sort" not in text, text  # PostgreSQL's


def test_changed_since_is_the_active_rows_and_those_ended_since():
    now = timezone.now()
    running = make_execution(status=Status.RUNNING)
    queued = make_execution(status=Status.QUEUED)
    ended = make_execution(status=Status.SUCCEEDED, finished_at=now)
    make_execution(status=Status.SUCCEEDED, finished_at=now - timedelta(seconds=5))

    found = set(Execution.objects.changed_since(now - timedelta(seconds=1)))

    assert found == {running, queued, ended}


def test_next_queued_is_its_queues_queued_rows_oldest_first():
    now = timezone.now()
    newer = make_execution(queue="workers", created_at=now)
    older = make_execution(queue="workers", created_at=now - timedelta(seconds=1))
    make_execution(queue="other")
    make_execution(queue="workers", status=Status.RUNNING)

    assert list(Execution.objects.next_queued("workers")) == [older, newer]


def test_an_instance_from_a_row_of_the_wrong_width_is_refused():
    execution = running()
    database = connections["default"]  # the connection itself, not the proxy
    meta = Execution._meta
    columns = ", ".join(field.column for field in meta.concrete_fields)
    key = meta.pk.get_db_prep_value(execution.pk, database)
    with database.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {meta.db_table} WHERE {meta.pk.column} = %s", [key]
        )
        row = cursor.fetchone()

    read = instance_from_row(Execution, database, row)
    assert read.snapshot() == fresh(execution).snapshot()
    with pytest.raises(ValueError, match="columns"):
        instance_from_row(Execution, database, row[:-1])
