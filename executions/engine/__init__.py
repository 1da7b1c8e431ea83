"""The interruptible engine: pure Python, no Django.

Commands are graphs of steps; the scheduler runs them with bounded
concurrency and honours an `InterruptSignal` under an `InterruptStrategy`,
ending with an `Outcome` that says which steps were processed. `@command`
declares a command from a function's signature, `@cmd.step` its steps.
"""

from .cmd import Cmd, GraphError, Registry, Step, UnknownCmd, register, registry
from .context import StepContext
from .decorators import command
from .interrupt import InterruptSignal, InterruptStrategy, StepInterrupted
from .outcome import Outcome, OutcomeKind
from .params import Between, Ge, Le, Param, Params, ParamsError
from .processes import CommandFailed
from .progress import ProgressTracker, StepState, StepStatus
from .scheduler import Scheduler, run_steps

__all__ = [
    "Between",
    "Cmd",
    "CommandFailed",
    "Ge",
    "GraphError",
    "InterruptSignal",
    "InterruptStrategy",
    "Le",
    "Outcome",
    "OutcomeKind",
    "Param",
    "Params",
    "ParamsError",
    "ProgressTracker",
    "Registry",
    "Scheduler",
    "Step",
    "StepContext",
    "StepInterrupted",
    "StepState",
    "StepStatus",
    "UnknownCmd",
    "command",
    "register",
    "registry",
    "run_steps",
]
