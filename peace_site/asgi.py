"""ASGI entry point: the reference project uses the app's one call."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")

from executions.asgi import get_asgi_application

application = get_asgi_application()
