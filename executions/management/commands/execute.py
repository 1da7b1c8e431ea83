"""Run a command in this terminal, with a live bar per step.

This process is the execution process and its own supervisor: Ctrl-C
reaches it directly. Ctrl-C once asks for a graceful stop; twice forces.
Exit codes: 0 succeeded, 1 failed, 130 interrupted, 2 usage error, 3 profile
busy.
"""

from __future__ import annotations

import asyncio
import gc
import getpass
import json
import signal
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.core.management.base import BaseCommand, CommandError

from executions import services
from executions.models import Execution, Source, Status
from executions.runtime.supervisor import Supervisor
from executions.terminal import ClosedPipeSafe, describe_cmds, interrupt_notice, report

if TYPE_CHECKING:
    from executions.bars import TerminalBars

EXIT_CODES = {
    Status.SUCCEEDED: 0,
    Status.FAILED: 1,
    Status.LOST: 1,
    Status.INTERRUPTED: 130,
}
USAGE, BUSY = 2, 3

#: Errors of these fields are about the options, not the command's params.
OPTIONS = ("strategy", "profile", "timeout", "force_after")


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


def params_error(error: services.ParamsError) -> CommandError:
    options = {k: v for k, v in error.errors.items() if k in OPTIONS}
    params = {k: v for k, v in error.errors.items() if k not in OPTIONS}
    lines = [f"Invalid --{k.replace('_', '-')}: {v}" for k, v in options.items()]
    if params:
        lines.append("Invalid params:")
        lines += [f"  {k}: {v}" for k, v in params.items()]
    return CommandError("\n".join(lines), returncode=USAGE)


class Command(BaseCommand):
    help = "Run a command (a graph of steps) here, with live progress."

    def add_arguments(self, parser):
        parser.add_argument(
            "cmd", nargs="?", help="the command's name, such as demo.steps"
        )
        parser.add_argument(
            "--list", action="store_true", help="list the commands and their params"
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
            "--timeout",
            metavar="SECONDS",
            help="interrupt the run gracefully after this long",
        )
        parser.add_argument(
            "--force-after",
            metavar="SECONDS",
            help="force an interrupt still pending after this long",
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="do not show the steps' log lines (errors still show)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="no bars: print the ID, then the final snapshot as JSON",
        )

    def run_from_argv(self, argv):
        # What is loaded by now (Django, the apps, this command) lives as long
        # as the process, yet every full collection walks all of it in vain:
        # one lands in start-up, before the ID is printed (~60 ms), and
        # interpreter exit walks it again as it tears the modules down (a few
        # hundred ms). Frozen, the collector sees only what the run allocates.
        # Here, not in execute(): call_command must not freeze its caller's heap.
        gc.freeze()
        super().run_from_argv(argv)

    def execute(self, *args, **options):
        # A closed stdout (`execute ... | head -1`) must not end the run.
        self.stdout._out = ClosedPipeSafe(self.stdout._out)
        return super().execute(*args, **options)

    def handle(self, *args, cmd, list, as_json, quiet, **options):
        if list:
            self.stdout.write(describe_cmds())
            return
        self.presses = 0
        self.execution: Execution | None = None
        # Installed before the row exists, kept until the run's loop takes
        # over: a Ctrl-C at any moment counts.
        previous = signal.signal(signal.SIGINT, self._early_signal)
        try:
            self._handle(cmd, as_json=as_json, quiet=quiet, **options)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, cmd, *, as_json, quiet, **options) -> None:
        supervisor = Supervisor(reaps=False)
        services.reap_orphans()
        started = self.start(cmd, supervisor=supervisor.identity, **options)
        self.execution = execution = started.execution
        self.stdout.write(str(execution.id))
        if not started.created:
            raise CommandError(
                f"Profile {execution.profile!r} is busy: execution {execution.id} "
                f"is {execution.status}.",
                returncode=BUSY,
            )
        bars = None
        if not as_json:
            # Here, not at the top: rich is tens of milliseconds to import,
            # which --json never needs and the ID need not wait for.
            from executions.bars import TerminalBars

            bars = TerminalBars(self.stdout._out, quiet=quiet)
            bars.say(f"{execution.title} ({execution.cmd})", "bold")
        execution = asyncio.run(self.run(supervisor, execution, bars))
        self.finish(execution, bars, as_json=as_json)

    def _early_signal(self, number, frame) -> None:
        self.presses += 1

    def start(
        self, cmd, *, supervisor, param, profile, strategy, resume, **options
    ) -> services.StartResult:
        if resume and (cmd or param or profile or strategy):
            raise CommandError(
                "--resume takes the command, params, profile and strategy of "
                "the execution it resumes: give none of them.",
                returncode=USAGE,
            )
        if not resume and not cmd:
            raise CommandError(
                "Name a command, or --resume ID (--list lists them).",
                returncode=USAGE,
            )
        login = getpass.getuser()
        try:
            if resume:
                return services.resume_execution(
                    resume,
                    source=Source.CLI,
                    dispatch=False,
                    supervisor=supervisor,
                    by_name=login,
                )
            return services.start_execution(
                cmd,
                parse_params(param),
                profile=profile,
                strategy=strategy,
                source=Source.CLI,
                dispatch=False,
                supervisor=supervisor,
                by_name=login,
                timeout=options["timeout"],
                force_after=options["force_after"],
            )
        except (
            services.UnknownCmd,
            services.UnknownExecution,
            services.NotResumable,
        ) as error:
            raise CommandError(str(error), returncode=USAGE) from None
        except services.ParamsError as error:
            raise params_error(error) from None

    async def run(
        self, supervisor: Supervisor, execution: Execution, bars: TerminalBars | None
    ) -> Execution:
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task] = set()

        def on_signal(source: str) -> None:
            self.presses += 1
            force = self.presses > 1
            ended = bool(bars and bars.ended)
            if self.presses <= 2:
                ignored = execution.strategy == "ignore"
                notice = interrupt_notice(force=force, ignored=ignored, ended=ended)
                self.say(bars, notice)
            if ended:
                return
            if bars:
                bars.interrupt_requested(force=force, force_after=execution.force_after)
            task = loop.create_task(self.request(supervisor, execution, source, force))
            pending.add(task)
            task.add_done_callback(pending.discard)

        loop.add_signal_handler(signal.SIGINT, on_signal, Source.CLI)
        loop.add_signal_handler(signal.SIGTERM, on_signal, Source.SHUTDOWN)
        early, self.presses = self.presses, 0
        for _ in range(early):
            on_signal(Source.CLI)
        try:
            if pending:
                await asyncio.wait(pending)  # recorded before the run starts
            observers = [bars] if bars else []
            return await supervisor.run_here(execution.id, observers=observers)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
            await supervisor.close()

    async def request(
        self, supervisor: Supervisor, execution: Execution, source: str, force: bool
    ) -> None:
        """Durable first, then the engine: so an interrupted row always
        carries the request that interrupted it."""
        try:
            await database_sync_to_async(services.request_interrupt)(
                execution.id, source=source, force=force, by_name=getpass.getuser()
            )
        except services.NotRunning:
            return  # it finished meanwhile: nothing to stop
        run = supervisor.runs.get(str(execution.id))
        if run is not None:
            run.deliver(force)

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
            # The report said what happened; a CommandError would say it
            # again, as if the command itself had crashed.
            raise SystemExit(code)
