"""Settings for peace_site, read from the environment in this one place.

Defaults run on a laptop with nothing else installed: SQLite and the
in-memory channel layer. See DESIGN.md for every variable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url

from executions.conf import from_environ

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DJANGO_DEBUG", False)

# Without DJANGO_SECRET_KEY a development key is used: fine on a laptop,
# flagged by `manage.py check --deploy`.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY",
    "django-insecure-peace-site-development-key-not-for-production",
)

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get(
        "DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver"
    ).split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before channels: its `runworker` command is ours (a worker_class
    # subclass that drains on SIGTERM).
    "executions",
    "channels",
    # Django's Tasks framework (django.tasks from 6.0) and its database
    # backend, for EXECUTIONS_RUNNER=tasks (`manage.py db_worker`).
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "peace_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


ASGI_APPLICATION = "peace_site.asgi.application"
# `manage.py runserver` (daphne's): the websocket message size the sockets
# answer `too_large` up to, as `make run` passes to daphne (executions.flow).
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 4 * 1024 * 1024

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Runners touch the database every poll interval: keep connections.
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Runners, the server and terminals write the same file at once: WAL lets
    # readers proceed during a write, IMMEDIATE takes the write lock up front
    # (no deadlock on upgrade), and the timeout waits instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {
        # Real daphne and CLI subprocesses in tests need a file, not :memory:;
        # one per test process, so two test runs never share it.
        "NAME": str(Path(tempfile.gettempdir()) / f"peace_site_test_{os.getpid()}.db"),
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # The pub/sub layer: measured twice as fast as the core layer for our
    # pushes, and it has no group expiry (docs/scale-out.md). What it lacks,
    # queue semantics, we do not use: the database is the worker queue.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "executions.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_connect_timeout": 3,
                        "socket_keepalive": True,
                    }
                ],
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "executions.layers.InMemoryChannelLayer"}}

# Celery (peace_site/celery.py; `celery -A peace_site worker`), the engine of
# EXECUTIONS_RUNNER=celery. Its broker is the Redis of the channel layer.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_IMPORTS = ["executions.runtime.taskqueues.celery"]
# An execution's task runs as long as the execution: each pool process takes
# one message at a time, acknowledged when the task ends (the task itself
# asks for late acknowledgement, and to be re-queued if its process is lost).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Django's Tasks framework, the engine of EXECUTIONS_RUNNER=tasks: tasks are
# rows in this database until `manage.py db_worker` runs them.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/executions/"
# JSON for the API's CSRF failures, Django's page for everything else.
CSRF_FAILURE_VIEW = "executions.api.csrf_failure"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` gathers files for a production deployment.
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or None
# daphne serves no static files itself; WhiteNoise does, straight from the
# apps' static folders so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Request bodies for the JSON API are small; refuse anything larger early.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# The app's own settings (executions/conf.py lists them with their defaults),
# from the environment where set: EXECUTIONS_RUNNER, EXECUTIONS_POLL_INTERVAL...
globals().update(from_environ())

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # channels_redis logs a traceback every second Redis is away: once per
    # 30 s is enough to know (the app's own failures are throttled likewise).
    "filters": {"repeats": {"()": "executions.runtime.throttle.RepeatFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "executions": {
            "handlers": ["console"],
            "level": os.environ.get("EXECUTIONS_LOG_LEVEL", "WARNING"),
        },
        "channels_redis.pubsub": {"filters": ["repeats"]},
        "channels_redis.core": {"filters": ["repeats"]},
    },
}
