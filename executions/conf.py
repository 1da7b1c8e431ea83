"""The app's settings, typed, each with a default.

A project sets any of them as `EXECUTIONS_<NAME>` in its Django settings; the
app reads them here and nowhere else, at the moment they are used (so
`override_settings` and pytest-django's `settings` fixture take effect).
`from_environ()` lets a twelve-factor project take them from the environment
in one line, as `peace_site/settings.py` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.conf import settings

RUNNERS = ("inprocess", "worker", "celery", "tasks")


class Setting:
    """One `EXECUTIONS_*` setting: its default, and how to read it from text."""

    def __init__(self, default: Any, parse=None, help: str = "") -> None:
        self.default = default
        self.parse = parse or type(default)
        self.help = help

    def __set_name__(self, owner, name: str) -> None:
        self.name = name
        self.setting = f"EXECUTIONS_{name}"

    def __get__(self, instance, owner=None) -> Any:
        if instance is None:
            return self
        return getattr(settings, self.setting, self.default)


def _seconds_or_none(text: str) -> float | None:
    text = text.strip()
    return float(text) if text else None


def _paths(text: str) -> list[str]:
    return [path for path in text.split(os.pathsep) if path]


class AppSettings:
    RUNNER = Setting(
        "inprocess",
        str,
        "who supervises runs started from the web, the API or the admin: "
        "inprocess (the ASGI server), celery, tasks or worker (runworker)",
    )
    WORKER_CONCURRENCY = Setting(1, int, "runs one engine worker takes at once")
    SHUTDOWN_GRACE = Setting(
        10.0, float, "seconds runs get to stop gracefully on shutdown before force"
    )
    FORCE_GRACE = Setting(
        2.0,
        float,
        "seconds a forced execution process gets to end before its process "
        "group is sent SIGTERM, then SIGKILL",
    )
    EXECUTION_NICE = Setting(
        19,
        int,
        "how much lower an execution process's CPU priority is than its "
        "server's (os.nice, at most 19): step code yields a core to pages "
        "and to the supervisor, however many runs there are",
    )
    DEFAULT_TIMEOUT = Setting(
        None, _seconds_or_none, "seconds before a run is interrupted (unset: never)"
    )
    DEFAULT_FORCE_AFTER = Setting(
        None,
        _seconds_or_none,
        "seconds a graceful interrupt may stay pending before it is forced",
    )
    REJOIN_INTERVAL = Setting(
        30.0, float, "seconds between re-joins of a control group (Redis forgets)"
    )
    POLL_INTERVAL = Setting(
        0.5, float, "seconds between re-reads of the durable interrupt request"
    )
    HEARTBEAT_INTERVAL = Setting(2.0, float, "seconds between heartbeats")
    HEARTBEAT_TIMEOUT = Setting(
        15.0, float, "seconds without a heartbeat before a run counts as lost"
    )
    PROGRESS_INTERVAL = Setting(
        0.05, float, "at most one progress event per step per this many seconds"
    )
    DB_PROGRESS_INTERVAL = Setting(
        0.5,
        float,
        "progress is written to the database at most this often, and the "
        "steps of a run nobody watches are sampled this often",
    )
    RELAY_INTERVAL = Setting(
        0.25,
        float,
        "with a channel layer that is not shared between processes, how often "
        "the server relays database changes of runs it does not supervise",
    )
    LOG_LIMIT = Setting(
        10_000,
        int,
        "log lines kept per execution; beyond it the oldest are dropped (and counted)",
    )
    LOG_RATE = Setting(
        1000.0,
        float,
        "log lines a second a run may send, sustained; more are dropped at the "
        "source (and counted)",
    )
    LOG_BURST = Setting(2000, int, "log lines a run may send at once, above the rate")
    FILES_ROOTS = Setting(
        [],
        _paths,
        "directories files.sync may use when started from the web, API or admin",
    )

    @classmethod
    def names(cls) -> list[str]:
        return [name for name, value in vars(cls).items() if isinstance(value, Setting)]


conf = AppSettings()


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `EXECUTIONS_*` settings present in the environment, parsed."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in AppSettings.names():
        setting: Setting = vars(AppSettings)[name]
        if setting.setting in environ:
            found[setting.setting] = setting.parse(environ[setting.setting])
    return found
