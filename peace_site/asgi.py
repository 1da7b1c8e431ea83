"""ASGI entry point: HTTP to Django, websockets through Channels.

`get_asgi_application()` runs first so the apps are loaded before the
consumers (and the models they import) are.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from executions.routing import websocket_urlpatterns  # noqa: E402
from executions.server import ServerLifecycle  # noqa: E402

application = ServerLifecycle(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
