"""The ASGI application the benchmarks serve with daphne: the product's own
application with the probes installed and the benchmarks' own commands
(`benchmarks/bench_cmds.py`) registered, plus a bare Channels consumer as the
floor for fan-out (`/ws/bench/watch/` joins one group and forwards its events;
`/ws/bench/send/` stamps each message it receives and sends it to the group),
a bare ASGI HTTP answer (`/bench/ping/`, 204, no Django) as the floor of
an HTTP request to daphne, and a bare Django view (`/bench/update/<id>/`) as
the floor of the API's interrupt door: a logged-in session's POST, CSRF
checked as the API's are, that does one UPDATE of the row and answers 202.
Under `/bench/stock/` the same URLs are served by Django's own ASGI handler
(the prefix stripped), for what the product's one-hop handler
(`executions.asgi.OneHopASGIHandler`) is measured against.

    daphne -b 127.0.0.1 -p PORT benchmarks.asgi:application
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")

# The product's application first: it sets Django up.
from peace_site.asgi import application as peace_application  # noqa: I001

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.utils import timezone
from django.views.decorators.http import require_POST

from benchmarks import bench_cmds, probe
from executions.models import Execution

bench_cmds.register()
probe.install()
if os.environ.get(probe.NO_RECHECK) == "1":
    # An experiment (benchmarks/fanout.py), not a probe: sockets forward
    # events without re-validating their session each second.
    from executions import sessions

    sessions.RECHECK_INTERVAL = float("inf")

BARE_GROUP = "bench-bare"


class BareWatcher(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(BARE_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(BARE_GROUP, self.channel_name)

    async def bench_event(self, event: dict) -> None:
        await self.send_json(
            {"type": "step", "sent": event["sent"], "step": event["step"]}
        )


class BareSender(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: dict, **kwargs) -> None:
        await self.channel_layer.group_send(
            BARE_GROUP,
            {"type": "bench.event", "sent": time.time(), "step": content["step"]},
        )


@require_POST
def update_floor(request: HttpRequest, execution_id) -> HttpResponse:
    """What the API's interrupt door cannot do without: the session, the
    user, the CSRF check (middleware, as for the API) and one UPDATE."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not_authenticated"}, status=403)
    updated = Execution.objects.filter(pk=execution_id).update(
        heartbeat_at=timezone.now()
    )
    return JsonResponse({"updated": updated}, status=202)


#: The product's URLs and the floor's, in this server only.
if __name__ != settings.ROOT_URLCONF:
    urlpatterns = [
        path("bench/update/<uuid:execution_id>/", update_floor),
        path("", include(settings.ROOT_URLCONF)),
    ]
    settings.ROOT_URLCONF = __name__

_watcher = BareWatcher.as_asgi()
_sender = BareSender.as_asgi()
#: Django's own handler, under STOCK.
STOCK = "/bench/stock"
_stock = ASGIHandler()


async def ping(scope, receive, send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/bench/ping/":
        return await ping(scope, receive, send)
    if scope["type"] == "http" and scope["path"].startswith(STOCK + "/"):
        stripped = scope["path"][len(STOCK) :]
        scope = {**scope, "path": stripped, "raw_path": stripped.encode()}
        return await _stock(scope, receive, send)
    if scope["type"] == "websocket" and scope["path"] == "/ws/bench/watch/":
        return await _watcher(scope, receive, send)
    if scope["type"] == "websocket" and scope["path"] == "/ws/bench/send/":
        return await _sender(scope, receive, send)
    return await peace_application(scope, receive, send)
