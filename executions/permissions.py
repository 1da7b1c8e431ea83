"""A user's permissions in one query.

Every door checks a permission on each request, and a socket re-checks on
each action. With Django's model backend alone, `has_perm` reads the user's
own permissions and then their groups' permissions: two queries. Here they
are read in one and kept where `ModelBackend.get_all_permissions` keeps its
own answer (`_perm_cache` on the user), so `has_perm` asks nothing more and
answers as it always does. With any other backend nothing is done here."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Q

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def model_backend_only() -> bool:
    return list(settings.AUTHENTICATION_BACKENDS) == [MODEL_BACKEND]


def preload(user) -> None:
    """Read `user`'s permissions, as `ModelBackend` would, in one query;
    nothing if they are read already or need no read (an anonymous or
    inactive user has none, an active superuser has them all), or if other
    backends decide."""
    if (
        getattr(user, "is_anonymous", True)
        or not user.is_active
        or getattr(user, "is_superuser", False)
        or hasattr(user, "_perm_cache")
        or not model_backend_only()
    ):
        return
    try:
        own = user._meta.get_field("user_permissions").related_query_name()
        groups = user._meta.get_field("groups").related_query_name()
    except FieldDoesNotExist:
        return  # not Django's permissions: ModelBackend has none to read
    rows = (
        Permission.objects.filter(
            Q(**{own: user.pk}) | Q(**{f"group__{groups}": user.pk})
        )
        .values_list("content_type__app_label", "codename")
        .distinct()
    )
    user._perm_cache = {f"{app_label}.{codename}" for app_label, codename in rows}
