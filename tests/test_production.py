"""The documented production settings: refused when unsafe, clean otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SECRET = "x" * 20 + "-a-long-random-production-secret-key-value-0123456789"


def check(**env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")
    }
    environment.update(DJANGO_SETTINGS_MODULE="peace_site.production", **env)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy"]
        + ["--fail-level", "WARNING"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_check_deploy_is_clean():
    result = check(DJANGO_SECRET_KEY=SECRET, DJANGO_ALLOWED_HOSTS="peace.example.com")

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DJANGO_ALLOWED_HOSTS": "peace.example.com"},
            "DJANGO_SECRET_KEY must be set in production",
        ),
        (
            {
                "DJANGO_SECRET_KEY": SECRET,
                "DJANGO_ALLOWED_HOSTS": "peace.example.com",
                "DJANGO_DEBUG": "1",
            },
            "DJANGO_DEBUG must be off in production.",
        ),
        *(
            (
                {"DJANGO_SECRET_KEY": SECRET, **hosts},
                "DJANGO_ALLOWED_HOSTS must name the hosts this site is served as",
            )
            for hosts in (
                {},
                {"DJANGO_ALLOWED_HOSTS": ""},
                {"DJANGO_ALLOWED_HOSTS": " , "},
                {"DJANGO_ALLOWED_HOSTS": "*"},
                {"DJANGO_ALLOWED_HOSTS": "peace.example.com, *"},
            )
        ),
    ],
)
def test_production_refuses_unsafe_settings(env, message):
    result = check(**env)

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr


def test_production_trusts_the_subdomains_a_leading_dot_allows():
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")
    }
    environment.update(
        DJANGO_SECRET_KEY=SECRET, DJANGO_ALLOWED_HOSTS="peace.example.com,.example.org"
    )
    script = "import peace_site.production as p; print(p.CSRF_TRUSTED_ORIGINS)"

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.stdout.strip() == str(
        ["https://peace.example.com", "https://*.example.org"]
    ), result.stderr
