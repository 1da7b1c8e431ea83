"""Ending rows whose supervisor is gone, so nothing stays stuck.

A row is orphaned when its supervisor stopped heartbeating for
`EXECUTIONS_HEARTBEAT_TIMEOUT`, when a supervisor named at its creation never
claimed it within that time, or at once when its supervisor was a process on
this host that no longer exists (a `kill -9` of `manage.py execute`).
Servers and workers reap from their start; `execute`, `executions` and
`interrupt` reap on their way.
"""

from __future__ import annotations

from ..conf import conf
from ..models import Execution
from . import broadcast, groups, store
from .identity import is_gone


def orphans() -> list[Execution]:
    """Active rows whose supervisor is gone, by the clock or by its PID."""
    stale = list(Execution.objects.stale(conf.HEARTBEAT_TIMEOUT))
    seen = {execution.pk for execution in stale}
    owned = Execution.objects.active().exclude(supervisor="").exclude(pk__in=seen)
    return stale + [
        execution
        for execution in owned.only("id", "supervisor", "status", "steps")
        if is_gone(execution.supervisor)
    ]


def reap_orphans() -> list[dict]:
    """End every orphaned row (`Execution.reap`); their snapshots, for the
    watchers. Each end is a compare-and-set: a racing reaper or a supervisor
    that finished meanwhile wins, and nothing is ended twice."""
    ended = []
    for execution in orphans():
        if execution.reap():
            ended.append(Execution.objects.get(pk=execution.pk).snapshot())
    return ended


def reap_now() -> list[dict]:
    """Reap from sync code (the management commands), telling the watchers."""
    ended = reap_orphans()
    for snapshot in ended:
        broadcast.status_changed_on_commit(snapshot, groups.FINISHED)
    return ended


async def reap() -> None:
    for snapshot in await store.runtime_database(reap_orphans)():
        await broadcast.status_changed(snapshot, groups.FINISHED)
