from django.apps import AppConfig
from django.core import checks
from django.utils.module_loading import autodiscover_modules


class ExecutionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "executions"
    verbose_name = "Executions"

    def ready(self) -> None:
        from . import sessions  # noqa: F401  (a logout closes that session's sockets)
        from .checks import CHECKS

        # What a project installing the app is missing (docs/install.md).
        for check in CHECKS:
            checks.register(check, "executions")
        # Commands are defined in a `cmds.py` of any installed app, found the
        # way admin.py modules are.
        autodiscover_modules("cmds")
