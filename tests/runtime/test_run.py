"""A run's spec: what its execution process is started with."""

from __future__ import annotations

import pytest
from django.test import override_settings

from executions.models import Status
from executions.runtime.run import Run
from tests.factories import execution

pytestmark = pytest.mark.django_db


def run_of(*, local: bool) -> Run:
    return Run(execution(Status.RUNNING), local=local, on_ack=lambda run: None)


def test_an_execution_process_runs_at_the_lowest_cpu_priority_by_default():
    assert run_of(local=False).spec.nice == 19


@override_settings(EXECUTIONS_EXECUTION_NICE=5)
def test_the_priority_drop_is_a_setting():
    assert run_of(local=False).spec.nice == 5


def test_a_terminals_own_run_keeps_the_priority_its_user_gave_it():
    assert run_of(local=True).spec.nice == 0
