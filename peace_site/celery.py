"""The Celery app of peace_site, laid out as Celery's "First steps with
Django" shows: `celery -A peace_site worker` finds it here, and its settings
are the `CELERY_*` ones in peace_site/settings.py."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")

app = Celery("peace_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
