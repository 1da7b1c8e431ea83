"""Websocket routes, mounted by `peace_site/asgi.py`."""

from __future__ import annotations

from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(
        r"^ws/executions/(?P<execution_id>[^/]+)/$",
        consumers.ExecutionConsumer.as_asgi(),
    ),
    re_path(r"^ws/executions/$", consumers.ExecutionListConsumer.as_asgi()),
]
