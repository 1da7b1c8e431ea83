"""Imported once by the forkserver that execution processes fork from:
Django set up, every app's commands loaded, before any execution starts."""

from __future__ import annotations

import django
from django.db import connections

django.setup()

from channels.layers import get_channel_layer  # noqa: E402

# The channel layer, its backend imported here once (channels_redis and
# redis-py for Redis): each execution process joins its control group with
# it (`control`). It connects nothing until used.
get_channel_layer()
# Nothing is inherited across fork but what is safe to share.
connections.close_all()
