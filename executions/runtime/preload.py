"""Imported once by the forkserver that execution processes fork from:
Django set up, every app's commands loaded, before any execution starts."""

from __future__ import annotations

import django
from django.db import connections

django.setup()
# Nothing is inherited across fork but what is safe to share.
connections.close_all()
