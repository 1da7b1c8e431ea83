"""Fixtures shared by every test module."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client

from executions.services import PERMISSIONS
from tests.scaleout.cluster import Session

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    # Runners reach the database from worker threads; persistent connections
    # there would outlive a test and keep PostgreSQL from dropping the test
    # database. Subprocesses keep the production setting.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture
def make_user(django_user_model):
    """Create a user holding the given actions' permissions (view/add/interrupt)."""
    counter = iter(range(1_000_000))

    def make(*actions: str, username: str | None = None, **extra):
        user = django_user_model.objects.create_user(
            username=username or f"user{next(counter)}",
            password="correct horse battery staple",
            **extra,
        )
        for action in actions:
            codename = PERMISSIONS[action].split(".", 1)[1]
            user.user_permissions.add(
                Permission.objects.get(
                    codename=codename, content_type__app_label="executions"
                )
            )
        # A fresh instance: Django caches permissions on the object.
        return django_user_model.objects.get(pk=user.pk)

    return make


@pytest.fixture
def subprocess_env(transactional_db):
    """Environment for a `manage.py` or daphne subprocess sharing the test
    database (a file: see settings). Needs committed data, hence
    transactional_db."""
    database = settings.DATABASES["default"]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["DJANGO_SETTINGS_MODULE"] = "peace_site.settings"
    env["PYTHONUNBUFFERED"] = "1"
    if database["ENGINE"] == "django.db.backends.sqlite3":
        env["DATABASE_URL"] = f"sqlite:///{database['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{database['USER']}:{database['PASSWORD']}@"
            f"{database['HOST']}:{database['PORT']}/{database['NAME']}"
        )
    return env


@pytest.fixture
def manage_py() -> list[str]:
    """The argv prefix that runs this project's manage.py."""
    return [sys.executable, str(ROOT / "manage.py")]


@pytest.fixture
def session(transactional_db, make_user) -> Iterator[Session]:
    """A logged-in staff user who may view, start and interrupt executions,
    for tests that talk to real daphne servers over HTTP and websockets."""
    user = make_user("view", "add", "interrupt", is_staff=True)
    client = Client()
    client.force_login(user)
    browser = Session(user, client.cookies["sessionid"].value)
    try:
        yield browser
    finally:
        browser.close()
