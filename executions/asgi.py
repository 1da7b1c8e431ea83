"""A project's ASGI application in one call: HTTP to Django, websockets to the
app's consumers, and the server lifecycle that supervises in-process runs.

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from executions.asgi import get_asgi_application
    application = get_asgi_application()

Django's own `get_asgi_application()` runs first, so the apps are loaded
before the consumers (and the models they import) are.
"""

from __future__ import annotations

from django.core.asgi import get_asgi_application as get_django_asgi_application


def get_asgi_application(http_application=None):
    """The ASGI application: `http_application` (Django's by default) for
    HTTP, the app's websocket routes behind the session, origin and host
    checks, wrapped in the lifecycle that starts the runtime with the server."""
    http_application = http_application or get_django_asgi_application()

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
