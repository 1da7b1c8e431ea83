"""The Celery engine (`EXECUTIONS_RUNNER=celery`): a task supervises each
execution on a Celery worker (`celery -A <project> worker`).

The project's Celery app must import this module (`CELERY_IMPORTS`, see
docs/scale-out.md). The task is late-acknowledged and re-queued if its pool
process is lost, so a worker that dies before the run is claimed does not
drop it; a second delivery finds the row claimed and does nothing.

Run it with the prefork pool (the default) or `--pool solo`: a task drains
on SIGTERM only in a process's main thread.

Shutdown: SIGTERM to a worker starts Celery's warm shutdown in its main
process, which waits for running tasks but tells them nothing. Here the main
process passes the SIGTERM on to each pool process running an execution,
which drains it (an interrupt with source `shutdown`, forced after
EXECUTIONS_SHUTDOWN_GRACE), so the warm shutdown ends once the runs have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from multiprocessing import process as mp_process

from celery import shared_task
from celery.signals import worker_process_init, worker_shutting_down
from celery.worker import state

from .. import process
from . import supervise

# multiprocessing's own class of a main process (the module deletes its
# name), taken while this still is the worker's main process (CELERY_IMPORTS
# are imported before the pool forks).
_MainProcess = type(mp_process.current_process())


@shared_task(
    name="executions.run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_execution(execution_id: str) -> None:
    """Supervise one recorded execution to its end."""
    # The worker's main process runs the shutdown; billiard's own SIGTERM
    # handler here would exit the pool process mid-run. A SIGTERM may also
    # come twice (systemd signals the whole group while the main process
    # passes its own on): the drain forces after its grace, not at once.
    supervise(execution_id, pool_process=True)


def enqueue(execution_id) -> None:
    run_execution.delay(str(execution_id))


@worker_process_init.connect
def _prepare_pool_process(**kwargs) -> None:
    """Let this pool process start execution processes, and start its
    forkserver now rather than at its first run."""
    # billiard makes its pool process multiprocessing's current process too:
    # daemonic (multiprocessing refuses it children, lest they outlive it)
    # and with an authkey multiprocessing may not send to its forkserver. To
    # multiprocessing, a pool process is a main process of its own: the
    # execution processes it starts cannot outlive it (each stops its own
    # group once its supervisor's socket closes).
    mp_process._current_process = _MainProcess()
    threading.Thread(target=process.warm_up, name="forkserver", daemon=True).start()


@worker_shutting_down.connect
def _drain_runs(sig, how, exitcode, **kwargs) -> None:
    """In the worker's main process: SIGTERM to every pool process that runs
    an execution (it drains; idle ones are left to Celery)."""
    # A signal handler: no logging here (the pool process logs its drain).
    for request in list(state.active_requests):
        if request.name == run_execution.name and request.worker_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(request.worker_pid, signal.SIGTERM)
