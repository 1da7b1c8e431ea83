"""A script's door: a Python process that interrupts executions by calling
the service (`services.request_interrupt`), as `manage.py interrupt` does but
without paying Python's start-up for each one. It reads execution IDs on
stdin and prints, for each, the time it called the service."""

from __future__ import annotations

import os
import sys
import time

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")
    django.setup()
    from executions import services
    from executions.models import Source

    for line in sys.stdin:
        sent = time.time()
        services.request_interrupt(line.strip(), source=Source.CLI, by_name="bench")
        print(sent, flush=True)


if __name__ == "__main__":
    main()
