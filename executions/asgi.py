"""A project's ASGI application in one call: HTTP to Django, websockets to the
app's consumers, and the server lifecycle that supervises in-process runs.

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from executions.asgi import get_asgi_application
    application = get_asgi_application()

Django is set up first, as by its own `get_asgi_application()`, so the apps
are loaded before the consumers (and the models they import) are.
"""

from __future__ import annotations

import django
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import get_resolver


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler, with a sync view's request in one thread hop.

    Django's own runs every request's middleware chain in async mode, and
    each of its middlewares (`MiddlewareMixin.__acall__`) hops to a thread
    and back for its `process_request`, and again for its
    `process_response`: with the default middleware a sync view's request
    makes a dozen hops, and a 404 took 3.3 ms in-process where this takes
    1.4. Here a request for a sync view runs the whole chain and the view in
    one call in the request's thread, as under WSGI; a request for an async
    view keeps Django's async chain, so it holds no thread while it awaits.
    The choice is made by resolving the path against ROOT_URLCONF: a path
    that resolves to nothing (a 404) is served by the sync chain."""

    def __init__(self) -> None:
        super().__init__()
        self.sync_handler = BaseHandler()
        self.sync_handler.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        if _view_is_async(request):
            return await super().get_response_async(request)
        return await sync_to_async(self.sync_handler.get_response)(request)


def _view_is_async(request: HttpRequest) -> bool:
    try:
        match = get_resolver().resolve(request.path_info)
    except Exception:
        # No such path, or a URLconf that cannot load: the chain answers it.
        return False
    return iscoroutinefunction(match.func)


def get_asgi_application(http_application=None):
    """The ASGI application: `http_application` (`OneHopASGIHandler` by
    default) for HTTP, the app's websocket routes behind the session, origin
    and host checks, wrapped in the lifecycle that starts the runtime with
    the server."""
    if http_application is None:
        django.setup(set_prefix=False)
        http_application = OneHopASGIHandler()

    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter

    from .origins import SameOriginValidator
    from .routing import websocket_urlpatterns
    from .runtime.server import ServerLifecycle

    return ServerLifecycle(
        ProtocolTypeRouter(
            {
                "http": http_application,
                "websocket": SameOriginValidator(
                    AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
                ),
            }
        )
    )
