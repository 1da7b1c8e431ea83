"""The product's Celery app (`peace_site.celery`) with the benchmark probes:
`celery -A benchmarks.engine_celery worker` is `celery -A peace_site worker`
whose pool processes report what their supervisors and execution processes
do (`benchmarks/probe.py`) and know the benchmarks' commands.

The probes go in at `worker_process_init`, in each pool process, before the
product's own receiver (connected later, when CELERY_IMPORTS are imported)
warms up that process's forkserver: so `benchmarks.forked` is among the
modules the forkserver preloads."""

from __future__ import annotations

from celery.signals import worker_process_init

from peace_site.celery import app

__all__ = ["app"]


@worker_process_init.connect
def _install_probes(**kwargs) -> None:
    import django

    django.setup()
    from benchmarks import bench_cmds, probe

    bench_cmds.register()
    probe.install()
