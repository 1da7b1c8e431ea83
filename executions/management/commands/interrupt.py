"""Interrupt an execution by ID, wherever it runs.

Exit codes: 0 accepted, 1 not running, 2 unknown ID.
"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from executions import services
from executions.models import Source


class Command(BaseCommand):
    help = "Interrupt a running execution by its ID."

    def add_arguments(self, parser):
        parser.add_argument("execution_id", metavar="ID")
        parser.add_argument(
            "--force", action="store_true", help="cancel steps in flight at once"
        )
        parser.add_argument("--reason", default="", help="kept in the audit record")

    def handle(self, *args, execution_id: str, force: bool, reason: str, **options):
        try:
            # The request first: to an orphan, it ends the run and says so.
            result = services.request_interrupt(
                execution_id,
                source=Source.CLI,
                force=force,
                reason=reason,
                by_name=getpass.getuser(),
            )
        except (services.UnknownExecution, services.ParamsError) as error:
            raise CommandError(str(error), returncode=2) from None
        except services.NotRunning as error:
            raise CommandError(str(error), returncode=1) from None
        finally:
            services.reap_orphans()
        execution = result.execution
        self.stdout.write(
            self.style.SUCCESS(f"{execution.id}: {execution.status}. ")
            + result.result.label
        )
