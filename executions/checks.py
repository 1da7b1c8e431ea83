"""System checks: what a project that installs the app is missing.

`manage.py check` (and every `runserver`, `migrate`...) runs them, so a
project made by `django-admin startproject` learns, one message each, what
docs/install.md says to add. Registered in `ExecutionsConfig.ready()`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from .conf import RUNNERS, AppSettings, Setting

INSTALL_DOC = "See docs/install.md."


def check_installed_apps(app_configs=None, **kwargs) -> list[Error]:
    """Channels serves the websockets; daphne, first, makes `runserver` an
    ASGI server (Django's own runserver serves no websockets and starts no
    in-process runs)."""
    errors = []
    if not apps.is_installed("channels"):
        errors.append(
            Error(
                '"channels" is not in INSTALLED_APPS.',
                hint='Add "channels" to INSTALLED_APPS: it serves the live pages\' '
                f"websockets. {INSTALL_DOC}",
                id="executions.E001",
            )
        )
    if importlib.util.find_spec("daphne") is not None:
        first = next(iter(apps.get_app_configs())).name
        if first != "daphne":
            where = "not first in" if apps.is_installed("daphne") else "missing from"
            errors.append(
                Error(
                    f'"daphne" is {where} INSTALLED_APPS.',
                    hint='Put "daphne" first in INSTALLED_APPS, so that '
                    "`manage.py runserver` serves websockets and runs executions. "
                    "If another ASGI server serves the project and runserver is "
                    'never used, add "executions.E002" to SILENCED_SYSTEM_CHECKS.',
                    id="executions.E002",
                )
            )
    return errors


def check_channel_layers(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Progress and interrupts travel over the default channel layer."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if "default" not in layers:
        return [
            Error(
                "No default channel layer: CHANNEL_LAYERS is not configured.",
                hint='For one server process: CHANNEL_LAYERS = {"default": '
                '{"BACKEND": "channels.layers.InMemoryChannelLayer"}}. For '
                "several, channels_redis (pip install 'peace-site[redis]'). "
                f"{INSTALL_DOC}",
                id="executions.E003",
            )
        ]
    backend = layers["default"].get("BACKEND", "")
    try:
        import_string(backend)
    except ImportError as error:
        return [
            Error(
                f"The default channel layer's BACKEND {backend!r} cannot be "
                f"imported: {error}",
                hint="Install its package (channels_redis: pip install "
                "'peace-site[redis]') or correct the dotted path.",
                id="executions.E004",
            )
        ]
    if backend == "channels_redis.pubsub.RedisPubSubChannelLayer":
        return [
            Warning(
                "channels_redis's pub/sub layer sleeps 0.1 s at a time while "
                "nothing is subscribed: an interrupt in a run's first moments, "
                "and the first events to a quiet server's first watcher, can "
                "wait for it.",
                hint='Use "BACKEND": "executions.pubsub.RedisPubSubChannelLayer", '
                "with the same CONFIG. See docs/scale-out.md.",
                id="executions.W002",
            )
        ]
    return []


def check_asgi_application(app_configs=None, **kwargs) -> list[Error]:
    """ASGI_APPLICATION must be the app's application: it routes the
    websockets and starts the in-process runs with the server."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    hint = (
        "Point ASGI_APPLICATION at `application` in your project's asgi.py, "
        "made by `application = executions.asgi.get_asgi_application()`. "
        f"{INSTALL_DOC}"
    )
    if not path:
        return [Error("ASGI_APPLICATION is not set.", hint=hint, id="executions.E005")]
    # Whatever stops the module importing (a typo, a settings error) is the news.
    try:
        application = import_string(path)
    except Exception as error:
        return [
            Error(
                f"ASGI_APPLICATION {path!r} cannot be imported: "
                f"{type(error).__name__}: {error}",
                hint=hint,
                id="executions.E006",
            )
        ]
    if not callable(application):
        return [
            Error(
                f"ASGI_APPLICATION {path!r} is not an ASGI application: it is "
                f"{type(application).__name__}, which cannot be called.",
                hint=hint,
                id="executions.E007",
            )
        ]
    from django.core.handlers.asgi import ASGIHandler

    if isinstance(application, ASGIHandler):
        return [
            Error(
                f"ASGI_APPLICATION {path!r} is Django's plain ASGI handler: it "
                "serves no websockets and runs no executions started from the "
                "web, the API or the admin.",
                hint=hint,
                id="executions.E008",
            )
        ]
    return []


def check_settings(app_configs=None, **kwargs) -> list[Error]:
    """Each `EXECUTIONS_*` setting a project sets has the type its default
    has (executions/conf.py), and EXECUTIONS_RUNNER names a runner."""
    errors = []
    for name in AppSettings.names():
        setting: Setting = vars(AppSettings)[name]
        if not hasattr(settings, setting.setting):
            continue
        value = getattr(settings, setting.setting)
        expected = _expected(setting.default)
        if not _accepts(setting.default, value):
            errors.append(
                Error(
                    f"{setting.setting} must be {expected}, not "
                    f"{type(value).__name__} ({value!r}).",
                    hint=f"{setting.setting}: {setting.help}. Its default is "
                    f"{setting.default!r}.",
                    id="executions.E010",
                )
            )
    runner = getattr(settings, "EXECUTIONS_RUNNER", RUNNERS[0])
    if isinstance(runner, str) and runner not in RUNNERS:
        errors.append(
            Error(
                f"EXECUTIONS_RUNNER {runner!r} is not a runner.",
                hint=f"Use one of: {', '.join(RUNNERS)}.",
                id="executions.E009",
            )
        )
    return errors


def check_sqlite(app_configs=None, **kwargs) -> list[CheckMessage]:
    """`manage.py execute` and the server write the same SQLite file at once:
    in SQLite's default (deferred) transactions, two writers that both read
    first deadlock, and one fails at once with "database is locked" instead
    of waiting its turn."""
    return sqlite_warnings(settings.DATABASES)


def sqlite_warnings(databases: Mapping[str, Mapping]) -> list[CheckMessage]:
    return [
        Warning(
            f"Database {alias!r} is SQLite without "
            '"transaction_mode": "IMMEDIATE": runs and the server writing at '
            'once can fail with "database is locked".',
            hint=f'Set DATABASES[{alias!r}]["OPTIONS"] = {{"timeout": 20, '
            '"transaction_mode": "IMMEDIATE", "init_command": '
            '"PRAGMA journal_mode=WAL;"}. See docs/install.md.',
            id="executions.W001",
        )
        for alias, database in databases.items()
        if database.get("ENGINE") == "django.db.backends.sqlite3"
        and database.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE"
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _accepts(default: Any, value: Any) -> bool:
    # conf.py's defaults say each setting's type. A default of None is an
    # optional number of seconds, the only kind of optional setting there is.
    if default is None:
        return value is None or _is_number(value)
    if isinstance(default, float):
        return _is_number(value)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list | tuple) and all(
            isinstance(item, str | os.PathLike) for item in value
        )
    return isinstance(value, type(default))


def _expected(default: Any) -> str:
    if default is None:
        return "a number of seconds or None"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, list):
        return "a list of paths"
    if isinstance(default, str):
        return "a string"
    return f"of type {type(default).__name__}"


CHECKS = (
    check_installed_apps,
    check_channel_layers,
    check_asgi_application,
    check_settings,
    check_sqlite,
)
