"""The one vocabulary and set of formats: durations, progress, the overall
bar, timestamps, the graph's layout, the timeline and bulk summaries."""

from __future__ import annotations

import pytest
from django.test import override_settings

from executions import display

pytestmark = pytest.mark.django_db


def step(step_id: str, status: str = "pending", after=(), done=0, total=10, **extra):
    return {
        "id": step_id,
        "title": step_id.title(),
        "after": list(after),
        "status": status,
        "progress": {"done": done, "total": total, "unit": "steps"},
        "message": "",
        "started_at": None,
        "finished_at": None,
        "error": None,
        **extra,
    }


DEPLOY = [
    step("app_download"),
    step("s3_bucket", after=["app_download"]),
    step("iam_policy", after=["app_download"]),
    step("iam_role", after=["iam_policy"]),
    step("instance_profile", after=["iam_role"]),
    step("s3_object", after=["s3_bucket", "instance_profile"]),
]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-1, "0.0s"),
        (0.66, "0.6s"),
        (9.99, "9.9s"),
        (59.9, "59s"),
        (65, "1m 05s"),
        (3725, "1h 02m"),
    ],
)
def test_duration_formats_elapsed_time(seconds, text):
    assert display.duration(seconds) == text


def test_progress_text_counts_units_of_work_not_steps():
    assert display.progress_text({"done": 3, "total": 10, "unit": "steps"}) == "3 / 10"
    assert display.progress_text({"done": 4, "total": None, "unit": "steps"}) == "4"
    assert (
        display.progress_text({"done": 0, "total": 64 * 1024 * 1024, "unit": "bytes"})
        == "0\xa0bytes / 64.0\xa0MB"
    )


def test_overall_counts_done_steps_and_running_progress():
    steps = [
        step("a", "succeeded", done=10),
        step("b", "running", done=5),
        step("c", "failed", done=2),
        step("d", "skipped"),
    ]

    summary = display.overall(steps)

    assert summary["text"] == "1 of 4 steps done · 42 %"
    assert summary["finished"] == 2  # the failed one stays in sight


def test_outcome_kinds_use_the_states_words():
    assert display.state_of_outcome("complete") == "succeeded"
    assert display.state_of_outcome("interrupted") == "interrupted"
    assert display.state_of_outcome("failed") == "failed"


def test_sources_are_named_as_people_call_them():
    assert display.source_label("cli") == "Terminal"
    assert display.source_label("web") == "Web page"


@override_settings(TIME_ZONE="Europe/Paris")
def test_timestamp_is_local_time_with_utc_beside_it():
    local, utc = display.timestamp("2025-01-31T12:00:05.123Z")

    assert local == "2025-01-31 13:00:05"
    assert utc == "2025-01-31 12:00:05 UTC"
    assert display.timestamp(None) == ("", "")


def test_stages_group_parallel_branches():
    stages = display.stages(DEPLOY)

    assert [[s["id"] for s in stage] for stage in stages] == [
        ["app_download"],
        ["s3_bucket", "iam_policy"],
        ["iam_role"],
        ["instance_profile"],
        ["s3_object"],
    ]


def test_graph_lays_out_columns_and_keeps_a_skipping_edge_off_the_nodes():
    graph = display.graph(DEPLOY)

    nodes = {node["step"]["id"]: (node["x"], node["y"]) for node in graph["nodes"]}
    assert nodes["s3_bucket"][0] == nodes["iam_policy"][0]
    assert nodes["s3_bucket"][1] != nodes["iam_policy"][1]
    # The role and the profile sit level with the policy, not with the
    # bucket, whose edge to the upload runs along its own row.
    assert nodes["iam_role"][1] == nodes["iam_policy"][1]
    assert nodes["instance_profile"][1] == nodes["iam_policy"][1]
    assert len(graph["edges"]) == 6


def test_graph_of_a_chain_is_a_sentence_instead():
    chain = [step("a"), step("b", after=["a"]), step("c", after=["b"])]

    assert display.graph(chain) is None


def test_timeline_shows_queue_wait_and_running_time():
    snapshot = {
        "started_at": "2025-01-01T00:00:00.000Z",
        "finished_at": "2025-01-01T00:00:10.000Z",
        "steps": [
            step(
                "a",
                "succeeded",
                started_at="2025-01-01T00:00:00.000Z",
                finished_at="2025-01-01T00:00:04.000Z",
            ),
            step(
                "b",
                "succeeded",
                after=["a"],
                started_at="2025-01-01T00:00:05.000Z",
                finished_at="2025-01-01T00:00:10.000Z",
            ),
            step("c", "skipped", after=["b"]),
        ],
    }

    timeline = display.timeline(snapshot)

    a, b, c = timeline["rows"]
    assert (a["start"], a["width"], a["wait"]) == (0, 40, "0.0s")
    assert (b["ready"], b["start"], b["width"], b["wait"]) == (40, 50, 50, "1.0s")
    assert c["shown"] is False
    assert timeline["span"] == "10s"


@pytest.mark.parametrize(
    ("results", "force", "text"),
    [
        (
            {"requested": ["a", "b", "c"], "finished": ["d", "e"]},
            False,
            "Interrupt requested for 3 executions; 2 already finished.",
        ),
        ({"forced": ["a"]}, True, "Forced interrupt requested for 1 execution."),
        ({"already": ["a"]}, False, "1 already interrupting."),
        ({}, False, "No execution selected: nothing changed."),
    ],
)
def test_bulk_summary_says_what_happened(results, force, text):
    assert display.bulk_summary(results, force=force) == text
