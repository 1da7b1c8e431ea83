"""Production settings: `DJANGO_SETTINGS_MODULE=peace_site.production`.

The base settings read the environment; this module refuses what must never
reach production (DEBUG on, no secret key) and turns on what `manage.py
check --deploy` asks for, assuming TLS at a proxy in front of daphne.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from .settings import *  # noqa: F403
from .settings import env_bool

if env_bool("DJANGO_DEBUG"):
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production.")
if not os.environ.get("DJANGO_SECRET_KEY"):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set in production: a long random string "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )
# The base settings drop blank entries: " , " names no host at all.
hosts = ALLOWED_HOSTS if os.environ.get("DJANGO_ALLOWED_HOSTS") else []  # noqa: F405
if not hosts or "*" in hosts:
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS must name the hosts this site is served as "
        '(a wildcard "*" lets any Host header through).'
    )

DEBUG = False
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]

# TLS ends at the proxy, which says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# A leading dot in ALLOWED_HOSTS means "and its subdomains"; Django's CSRF
# check (and the websocket origin check) spell that `https://*.domain`.
CSRF_TRUSTED_ORIGINS = [
    f"https://*{host}" if host.startswith(".") else f"https://{host}"
    for host in ALLOWED_HOSTS  # noqa: F405
]
