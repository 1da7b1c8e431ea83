"""Run a command in this terminal, with a live bar per step.

Ctrl-C once asks for a graceful stop; twice forces. Exit codes: 0 succeeded,
1 failed, 130 interrupted, 2 usage error, 3 profile busy.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import signal

from channels.db import database_sync_to_async
from django.core.management.base import BaseCommand, CommandError

from executions import services
from executions.engine import InterruptSignal
from executions.models import Execution, Source, Status
from executions.runner import Runner
from executions.terminal import TerminalBars, report

EXIT_CODES = {
    Status.SUCCEEDED: 0,
    Status.FAILED: 1,
    Status.LOST: 1,
    Status.INTERRUPTED: 130,
}
USAGE, BUSY = 2, 3

GRACEFUL = (
    "Interrupt requested: steps in flight finish or stop at their checkpoint; "
    "no new step starts. Press Ctrl-C again to force."
)
FORCED = "Forcing: steps in flight are cancelled now."


def parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CommandError(
                f"--param takes name=value, not {pair!r}.", returncode=USAGE
            )
        params[name.strip()] = value
    return params


class Command(BaseCommand):
    help = "Run a command (a graph of steps) here, with live progress."

    def add_arguments(self, parser):
        parser.add_argument(
            "cmd", nargs="?", help="the command's name, such as demo.steps"
        )
        parser.add_argument(
            "--resume",
            metavar="ID",
            help="run an interrupted or failed execution again, skipping the "
            "steps that succeeded",
        )
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a param for the command; repeat for several",
        )
        parser.add_argument("--profile", help="at most one active run per profile")
        parser.add_argument(
            "--strategy",
            help="finish-current (default), poll-next-n:N or ignore",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="no bars: print the ID, then the final snapshot as JSON",
        )

    def handle(self, *args, cmd, param, profile, strategy, as_json, resume, **opts):
        started = self.start(cmd, param, profile, strategy, resume)
        execution = started.execution
        self.stdout.write(str(execution.id))
        if not started.created:
            raise CommandError(
                f"Profile {execution.profile!r} is busy: execution {execution.id} "
                f"is {execution.status}.",
                returncode=BUSY,
            )
        bars = None if as_json else TerminalBars(self.stdout._out)
        if bars:
            bars.say(f"{execution.title} ({execution.cmd})", "bold")
        execution = asyncio.run(self.run(execution, bars))
        self.finish(execution, bars, as_json=as_json)

    def start(self, cmd, param, profile, strategy, resume) -> services.StartResult:
        if resume and (cmd or param or profile or strategy):
            raise CommandError(
                "--resume takes the command, params, profile and strategy of "
                "the execution it resumes: give none of them.",
                returncode=USAGE,
            )
        if not resume and not cmd:
            raise CommandError("Name a command, or --resume ID.", returncode=USAGE)
        login = getpass.getuser()
        try:
            if resume:
                return services.resume_execution(
                    resume, source=Source.CLI, dispatch=False, by_name=login
                )
            return services.start_execution(
                cmd,
                parse_params(param),
                profile=profile,
                strategy=strategy,
                source=Source.CLI,
                dispatch=False,
                by_name=login,
            )
        except (
            services.UnknownCmd,
            services.UnknownExecution,
            services.NotResumable,
        ) as error:
            raise CommandError(str(error), returncode=USAGE) from None
        except services.ParamsError as error:
            lines = "\n".join(f"  {k}: {v}" for k, v in error.errors.items())
            raise CommandError(f"Invalid params:\n{lines}", returncode=USAGE) from None

    async def run(self, execution: Execution, bars: TerminalBars | None) -> Execution:
        interrupt = InterruptSignal()
        presses = 0
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task] = set()

        def on_signal(source: str) -> None:
            nonlocal presses
            presses += 1
            force = presses > 1
            self.say(bars, FORCED if force else GRACEFUL)
            task = loop.create_task(self.request(execution, interrupt, source, force))
            pending.add(task)
            task.add_done_callback(pending.discard)

        loop.add_signal_handler(signal.SIGINT, on_signal, Source.CLI)
        loop.add_signal_handler(signal.SIGTERM, on_signal, Source.SHUTDOWN)
        try:
            observers = [bars] if bars else []
            return await Runner(
                execution.id, signal=interrupt, observers=observers
            ).run()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

    async def request(
        self, execution: Execution, interrupt: InterruptSignal, source: str, force: bool
    ) -> None:
        """Durable first, then the in-memory signal: so an interrupted row
        always carries the request that interrupted it."""
        try:
            await database_sync_to_async(services.request_interrupt)(
                execution.id, source=source, force=force, by_name=getpass.getuser()
            )
        except services.NotRunning:
            pass  # it finished meanwhile: nothing to stop
        finally:
            interrupt.request(force=force)

    def say(self, bars: TerminalBars | None, text: str) -> None:
        if bars:
            bars.say(text, "yellow")
        else:
            self.stderr.write(text)

    def finish(self, execution: Execution, bars, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(execution.snapshot(), indent=2))
        else:
            for text, style in report(execution):
                bars.say(text, style)
        code = EXIT_CODES[execution.status]
        if code:
            raise CommandError(
                f"Execution {execution.id} {execution.status}.", returncode=code
            )
