"""The interruptible engine: pure Python, no Django.

Commands are graphs of steps; the scheduler runs them with bounded
concurrency and honours an `InterruptSignal` under an `InterruptStrategy`,
ending with an `Outcome` that says which steps were processed.
"""

from .cmd import Cmd, GraphError, Registry, Step, UnknownCmd, register, registry
from .context import StepContext
from .interrupt import InterruptSignal, InterruptStrategy, StepInterrupted
from .outcome import Outcome, OutcomeKind
from .params import Param, ParamsError
from .progress import ProgressTracker, StepState, StepStatus
from .scheduler import Scheduler, run_steps

__all__ = [
    "Cmd",
    "GraphError",
    "InterruptSignal",
    "InterruptStrategy",
    "Outcome",
    "OutcomeKind",
    "Param",
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
    "register",
    "registry",
    "run_steps",
]
