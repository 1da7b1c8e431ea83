"""Run a `manage.py` command with the benchmark probes installed.

    python -m benchmarks.harness runworker executions
    python -m benchmarks.harness execute demo.steps --param seconds=60 --json

The command is the product's own, run as `manage.py` runs it; the probes
(`benchmarks/probe.py`) only report what its supervisor and engine do (a
worker's execution processes through the forkserver's preload, a terminal's
own run in this process), and the benchmarks' commands are registered.
"""

from __future__ import annotations

import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peace_site.settings")
    django.setup()
    from django.core.management import execute_from_command_line

    from benchmarks import bench_cmds, probe

    bench_cmds.register()
    probe.install()
    execute_from_command_line(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
