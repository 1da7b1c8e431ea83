from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from executions import services


@pytest.mark.django_db
def test_executions_lists_a_table(capsys):
    first = services.start_execution(
        "demo.steps", {"count": 3}, profile="staging", source="cli", dispatch=False
    ).execution
    second = services.start_execution(
        "demo.deploy", {}, source="cli", dispatch=False
    ).execution
    second.claim("test-runner")

    call_command("executions")

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "COMMAND",
        "STATUS",
        "PROFILE",
        "STEPS",
        "CREATED",
        "FINISHED",
    ]
    assert lines[1].split()[:5] == [
        str(second.id),
        "demo.deploy",
        "running",
        "-",
        "0/6",
    ]
    assert lines[2].split()[:5] == [
        str(first.id),
        "demo.steps",
        "queued",
        "staging",
        "0/3",
    ]


@pytest.mark.django_db
def test_executions_filters_by_status(capsys):
    services.start_execution("demo.steps", {}, source="cli", dispatch=False)

    call_command("executions", "--status", "running")

    assert capsys.readouterr().out == "No executions.\n"


@pytest.mark.django_db
def test_executions_unknown_status_exits_2():
    with pytest.raises(CommandError) as raised:
        call_command("executions", "--status", "sleeping")

    assert raised.value.returncode == 2
    assert str(raised.value).startswith("Unknown status 'sleeping': use one of queued")
