"""The reference project with the misbehaving commands of tests/e2e/faulty:
for real daphne processes in the runtime's tests."""

from peace_site.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.e2e.faulty"]  # noqa: F405
