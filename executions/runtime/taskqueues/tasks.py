"""The Django Tasks engine (`EXECUTIONS_RUNNER=tasks`): the execution is
enqueued as a task of Django's Tasks framework, so any Tasks backend's worker
supervises it (`django-tasks-db`'s `db_worker`, RQ, Celery...).

`django.tasks` from Django 6.0, the `django-tasks` package before it: the
same task either way. A worker runs the task in its own process, which is
then the supervisor: on SIGTERM the run drains (an interrupt with source
`shutdown`) and the worker's own handler is told too, so it exits after
this task; a second SIGTERM forces the run.
"""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:  # Django < 6.0
    from django_tasks import task

from . import supervise


@task()
def run_execution(execution_id: str) -> None:
    """Supervise one recorded execution to its end."""
    supervise(execution_id)


def enqueue(execution_id) -> None:
    run_execution.enqueue(str(execution_id))
