"""Websocket routes, mounted by `executions.asgi`. The last one takes every
other path, so an unknown one is closed with 4404 instead of failing the
handshake with a traceback."""

from __future__ import annotations

from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(
        r"^ws/executions/(?P<execution_id>[^/]+)/$",
        consumers.ExecutionConsumer.as_asgi(),
    ),
    re_path(r"^ws/executions/$", consumers.ExecutionListConsumer.as_asgi()),
    re_path(r"", consumers.NotFoundConsumer.as_asgi()),
]
