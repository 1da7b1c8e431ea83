"""The system checks that tell a project what it is missing to run the app."""

from __future__ import annotations

import importlib.util

import pytest
from django.conf import settings
from django.core.checks import Error, Warning, run_checks
from django.core.handlers.asgi import ASGIHandler
from django.test import modify_settings, override_settings

from executions import checks

INSTALL_DOC = "See docs/install.md."
ASGI_HINT = (
    "Point ASGI_APPLICATION at `application` in your project's asgi.py, made by "
    "`application = executions.asgi.get_asgi_application()`. See docs/install.md."
)


async def application(scope, receive, send):
    """Stands for a project's ASGI application."""


not_an_application = "a string"
plain_django = ASGIHandler()


def ids(messages) -> list[str]:
    return [message.id for message in messages]


# -- registration --------------------------------------------------------------------


def test_checks_pass_for_the_reference_project():
    assert run_checks(tags=["executions"]) == []


@override_settings(CHANNEL_LAYERS={}, EXECUTIONS_RUNNER="nope")
def test_checks_run_with_manage_py_check():
    # In no particular order: Django keeps its checks in a set.
    assert sorted(ids(run_checks(tags=["executions"]))) == [
        "executions.E003",
        "executions.E009",
    ]


# -- INSTALLED_APPS ------------------------------------------------------------------


@modify_settings(INSTALLED_APPS={"remove": "channels"})
def test_check_installed_apps_without_channels():
    assert checks.check_installed_apps() == [
        Error(
            '"channels" is not in INSTALLED_APPS.',
            hint='Add "channels" to INSTALLED_APPS: it serves the live pages\' '
            f"websockets. {INSTALL_DOC}",
            id="executions.E001",
        )
    ]


def daphne_last() -> list[str]:
    return [app for app in settings.INSTALLED_APPS if app != "daphne"] + ["daphne"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            modify_settings(INSTALLED_APPS={"remove": "daphne"}),
            '"daphne" is missing from INSTALLED_APPS.',
        ),
        (
            override_settings(INSTALLED_APPS=daphne_last()),
            '"daphne" is not first in INSTALLED_APPS.',
        ),
    ],
)
def test_check_installed_apps_wants_daphne_first(change, message):
    with change:
        errors = checks.check_installed_apps()

    assert errors == [
        Error(
            message,
            hint='Put "daphne" first in INSTALLED_APPS, so that `manage.py '
            "runserver` serves websockets and runs executions. If another ASGI "
            "server serves the project and runserver is never used, add "
            '"executions.E002" to SILENCED_SYSTEM_CHECKS.',
            id="executions.E002",
        )
    ]


@modify_settings(INSTALLED_APPS={"remove": "daphne"})
def test_check_installed_apps_without_daphne_installed_asks_nothing(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "daphne" else find_spec(name, *args),
    )

    assert checks.check_installed_apps() == []


# -- CHANNEL_LAYERS ------------------------------------------------------------------


@pytest.mark.parametrize("layers", [None, {}, {"other": {}}])
def test_check_channel_layers_without_a_default_layer(layers):
    with override_settings(CHANNEL_LAYERS=layers):
        errors = checks.check_channel_layers()

    assert errors == [
        Error(
            "No default channel layer: CHANNEL_LAYERS is not configured.",
            hint='For one server process: CHANNEL_LAYERS = {"default": '
            '{"BACKEND": "channels.layers.InMemoryChannelLayer"}}. For several, '
            "channels_redis (pip install 'peace-site[redis]'). See docs/install.md.",
            id="executions.E003",
        )
    ]


@override_settings(
    CHANNEL_LAYERS={"default": {"BACKEND": "no_such_package.RedisChannelLayer"}}
)
def test_check_channel_layers_backend_that_cannot_be_imported():
    errors = checks.check_channel_layers()

    assert errors == [
        Error(
            "The default channel layer's BACKEND 'no_such_package.RedisChannelLayer' "
            "cannot be imported: No module named 'no_such_package'",
            hint="Install its package (channels_redis: pip install "
            "'peace-site[redis]') or correct the dotted path.",
            id="executions.E004",
        )
    ]


@override_settings(
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
)
def test_check_channel_layers_accepts_the_in_memory_layer():
    assert checks.check_channel_layers() == []


def test_check_channel_layers_points_channels_redis_pubsub_to_the_projects():
    """Its reader's 0.1 s sleeps delay a run's first interrupt: the project's
    subclass, with the same options, reads once it has a subscription."""
    config = {"hosts": ["redis://127.0.0.1:6379/0"]}
    own = {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": config}
    with override_settings(CHANNEL_LAYERS={"default": own}):
        warnings = checks.check_channel_layers()
    assert [warning.id for warning in warnings] == ["executions.W002"]
    assert "executions.pubsub.RedisPubSubChannelLayer" in warnings[0].hint

    ours = {"BACKEND": "executions.pubsub.RedisPubSubChannelLayer", "CONFIG": config}
    with override_settings(CHANNEL_LAYERS={"default": ours}):
        assert checks.check_channel_layers() == []


# -- ASGI_APPLICATION ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message", "error_id"),
    [
        (None, "ASGI_APPLICATION is not set.", "executions.E005"),
        (
            "tests.no_such_module.application",
            "ASGI_APPLICATION 'tests.no_such_module.application' cannot be "
            "imported: ModuleNotFoundError: No module named 'tests.no_such_module'",
            "executions.E006",
        ),
        (
            f"{__name__}.missing",
            f"ASGI_APPLICATION '{__name__}.missing' cannot be imported: "
            f'ImportError: Module "{__name__}" does not define a "missing" '
            "attribute/class",
            "executions.E006",
        ),
        (
            f"{__name__}.not_an_application",
            f"ASGI_APPLICATION '{__name__}.not_an_application' is not an ASGI "
            "application: it is str, which cannot be called.",
            "executions.E007",
        ),
        (
            f"{__name__}.plain_django",
            f"ASGI_APPLICATION '{__name__}.plain_django' is Django's plain ASGI "
            "handler: it serves no websockets and runs no executions started "
            "from the web, the API or the admin.",
            "executions.E008",
        ),
    ],
)
def test_check_asgi_application_refuses(path, message, error_id):
    with override_settings(ASGI_APPLICATION=path):
        errors = checks.check_asgi_application()

    assert errors == [Error(message, hint=ASGI_HINT, id=error_id)]


@override_settings(ASGI_APPLICATION=f"{__name__}.application")
def test_check_asgi_application_accepts_an_application():
    assert checks.check_asgi_application() == []


# -- EXECUTIONS_* --------------------------------------------------------------------


@override_settings(EXECUTIONS_RUNNER="threads")
def test_check_settings_unknown_runner():
    assert checks.check_settings() == [
        Error(
            "EXECUTIONS_RUNNER 'threads' is not a runner.",
            hint="Use one of: inprocess, worker, celery, tasks.",
            id="executions.E009",
        )
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("POLL_INTERVAL", "0.5", "must be a number, not str ('0.5')"),
        ("POLL_INTERVAL", True, "must be a number, not bool (True)"),
        ("WORKER_CONCURRENCY", 2.5, "must be an integer, not float (2.5)"),
        ("DEFAULT_TIMEOUT", "60", "must be a number of seconds or None, not str"),
        ("FILES_ROOTS", "/srv:/data", "must be a list of paths, not str"),
        ("FILES_ROOTS", [1], "must be a list of paths, not list ([1])"),
        ("RUNNER", 1, "must be a string, not int (1)"),
    ],
)
def test_check_settings_wrong_type(name, value, expected):
    with override_settings(**{f"EXECUTIONS_{name}": value}):
        errors = checks.check_settings()

    assert ids(errors) == ["executions.E010"]
    assert errors[0].msg.startswith(f"EXECUTIONS_{name} {expected}")
    assert errors[0].hint.startswith(f"EXECUTIONS_{name}: ")


@override_settings(
    EXECUTIONS_RUNNER="celery",
    EXECUTIONS_POLL_INTERVAL=1,
    EXECUTIONS_WORKER_CONCURRENCY=4,
    EXECUTIONS_DEFAULT_TIMEOUT=None,
    EXECUTIONS_DEFAULT_FORCE_AFTER=30,
    EXECUTIONS_FILES_ROOTS=("/srv", "/data"),
)
def test_check_settings_accepts_values_of_the_right_type():
    assert checks.check_settings() == []


def test_check_settings_message_shows_the_help_and_default():
    with override_settings(EXECUTIONS_HEARTBEAT_TIMEOUT="15"):
        (error,) = checks.check_settings()

    assert error.msg == "EXECUTIONS_HEARTBEAT_TIMEOUT must be a number, not str ('15')."
    assert error.hint == (
        "EXECUTIONS_HEARTBEAT_TIMEOUT: seconds without a heartbeat before a run "
        "counts as lost. Its default is 15.0."
    )


# -- DATABASES -----------------------------------------------------------------------


def test_check_sqlite_warns_without_immediate_transactions():
    databases = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "OPTIONS": {"transaction_mode": "IMMEDIATE"},
        },
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": "other.db"},
    }

    assert checks.sqlite_warnings(databases) == [
        Warning(
            "Database 'other' is SQLite without \"transaction_mode\": "
            '"IMMEDIATE": runs and the server writing at once can fail with '
            '"database is locked".',
            hint='Set DATABASES[\'other\']["OPTIONS"] = {"timeout": 20, '
            '"transaction_mode": "IMMEDIATE", "init_command": '
            '"PRAGMA journal_mode=WAL;"}. See docs/install.md.',
            id="executions.W001",
        )
    ]


def test_check_sqlite_leaves_other_databases_alone():
    databases = {"default": {"ENGINE": "django.db.backends.postgresql"}}

    assert checks.sqlite_warnings(databases) == []
