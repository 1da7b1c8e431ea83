"""A project's ASGI application in one call: HTTP to Django, websockets to the
app's consumers, and the server lifecycle that supervises in-process runs.

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from executions.asgi import get_asgi_application
    application = get_asgi_application()

Django is set up first, as by its own `get_asgi_application()`, so the apps
are loaded before the consumers (and the models they import) are.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django import db
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import get_resolver


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler, with a sync view's request in one thread hop,
    on a thread (and a database connection) kept for the next request.

    Django's own runs every request's middleware chain in async mode, and
    each of its middlewares (`MiddlewareMixin.__acall__`) hops to a thread
    and back for its `process_request`, and again for its
    `process_response`: with the default middleware a sync view's request
    makes a dozen hops. Here a request for a sync view runs the whole chain
    and the view in one call, as under WSGI; a request for an async view
    keeps Django's async chain, so it holds no thread while it awaits. The
    choice is made by resolving the path against ROOT_URLCONF: a path that
    resolves to nothing (a 404) is served by the sync chain.

    Django also gives each request a thread of its own for its sync code,
    started for it and ended after it, and so a new database connection per
    request whatever CONN_MAX_AGE says (Django's docs: persistent
    connections do not work under ASGI). Here each request still has one
    thread to itself for all of its sync code, signals included, but
    threads are kept between requests (IDLE_THREADS at most), and with them
    their connections, which CONN_MAX_AGE and CONN_HEALTH_CHECKS then govern
    as they do under WSGI."""

    #: Request threads kept waiting for a request; past that, one is ended.
    IDLE_THREADS = 16

    def __init__(self) -> None:
        super().__init__()
        self.sync_handler = BaseHandler()
        self.sync_handler.load_middleware(is_async=False)
        # Used on the event loop only: no lock.
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(
                f"Django can only handle ASGI/HTTP connections, not {scope['type']}."
            )
        thread = self._idle.pop() if self._idle else _request_thread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            self._release(thread, asyncio.get_running_loop())

    def _release(self, thread: ThreadPoolExecutor, loop) -> None:
        """Keep `thread` for another request once it is free: a request
        cancelled (its client gone) may leave its sync code still running."""

        def free(_) -> None:
            try:
                loop.call_soon_threadsafe(self._keep, thread)
            except RuntimeError:  # the loop is closed: nobody to keep it for
                _end(thread)

        thread.submit(_nothing).add_done_callback(free)

    def _keep(self, thread: ThreadPoolExecutor) -> None:
        if len(self._idle) < self.IDLE_THREADS:
            self._idle.append(thread)
        else:
            _end(thread)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        if _view_is_async(request):
            return await super().get_response_async(request)
        return await sync_to_async(self.sync_handler.get_response)(request)

    def close(self) -> None:
        """End the kept threads, closing their database connections; returns
        once they have ended."""
        idle, self._idle = self._idle, []
        for thread in idle:
            _end(thread, wait=True)


def _nothing() -> None:
    pass


def _request_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="executions-http")


def _end(thread: ThreadPoolExecutor, *, wait: bool = False) -> None:
    """Its connections closed in the thread that holds them, then the thread."""
    thread.submit(db.connections.close_all)
    thread.shutdown(wait=wait)


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
