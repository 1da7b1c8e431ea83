"""Commands: named graphs of steps, and the registry that finds them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .params import Param, Params, clean_params
from .progress import check_unit

StepFunc = Callable[..., Any]


class GraphError(ValueError):
    """A command's steps do not form a valid graph."""


class UnknownCmd(LookupError):
    """No command is registered under that name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"Unknown command {name!r}. Known commands: {', '.join(self.known)}."
        )


@dataclass(frozen=True)
class Step:
    """One unit of work. `func(ctx)` may be `async def` (or any callable whose
    call is a coroutine) or a plain `def`, run in a thread. `after` names the
    steps it depends on; `inputs` names those whose results it takes, as
    keyword arguments: `func(ctx, scan=<what scan returned>)`. What a step
    returns is its result and must be JSON."""

    id: str
    func: StepFunc
    title: str = ""
    after: tuple[str, ...] = ()
    unit: str = "steps"
    total: int | None = None
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        after = tuple(self.after)
        after += tuple(name for name in self.inputs if name not in after)
        object.__setattr__(self, "after", after)
        # Refused here, where the command is defined, not mid-run.
        check_unit(self.unit)
        if not self.title:
            object.__setattr__(self, "title", self.id)

    @property
    def is_async(self) -> bool:
        return is_async_callable(self.func)


def is_async_callable(func: Any) -> bool:
    """True if calling `func` gives a coroutine: an `async def`, a partial of
    one, or an object whose `__call__` is one (which `iscoroutinefunction`
    alone does not see before Python 3.12's `markcoroutinefunction`)."""
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    if inspect.isfunction(func) or inspect.ismethod(func) or not callable(func):
        return False
    return inspect.iscoroutinefunction(type(func).__call__)


def step_from_function(
    func: StepFunc,
    *,
    title: str = "",
    after: Iterable[str | StepFunc] = (),
    unit: str = "steps",
    total: int | None = None,
) -> Step:
    """A Step from a function: its name is the step's id, its first parameter
    takes the context and every other one names a step whose result it takes;
    the docstring's first line is the default title."""
    step_id = func.__name__
    parameters = list(inspect.signature(func).parameters.values())
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    if not parameters or parameters[0].kind not in positional:
        raise GraphError(
            f"Step {step_id!r} must take the step context first: "
            f"def {step_id}(ctx, ...)."
        )
    inputs = []
    for parameter in parameters[1:]:
        if parameter.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            raise GraphError(
                f"Step {step_id!r}: parameter {parameter.name!r} must name a "
                "step whose result it takes (no *args, **kwargs or "
                "positional-only parameters)."
            )
        inputs.append(parameter.name)
    if not title:
        title = (inspect.getdoc(func) or "").strip().partition("\n")[0]
    order = tuple(name if isinstance(name, str) else name.__name__ for name in after)
    return Step(step_id, func, title, order, unit, total, tuple(inputs))


StepsSpec = Sequence[Step] | Callable[[Params], Sequence[Step]]


@dataclass(frozen=True)
class Cmd:
    """A command: a name such as `demo.steps`, a title, a params schema and
    its steps (a list, or a function of the cleaned params returning one).

    `@command` (in `decorators`) builds one from a function's signature;
    `@cmd.step` adds a step to its list."""

    name: str
    title: str
    steps: StepsSpec
    params: tuple[Param, ...] = ()
    description: str = ""
    # Checks on the cleaned params (a `Params`) as a whole; raise
    # ParamsError to refuse.
    validate: Callable[[Params], None] | None = field(default=None)
    # Further checks when started from a shared door (web, API, admin) rather
    # than a terminal, whose user already has the shell; ParamsError refuses.
    # Steps see such a run as `ctx.restricted` and apply the same limits to
    # what they touch at run time.
    restrict: Callable[[Params], None] | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))

    def clean_params(self, raw: Any, *, restricted: bool = False) -> dict[str, Any]:
        """The params as JSON (to store), from JSON or terminal strings; with
        `restricted`, the shared doors' limits apply too. ParamsError
        refuses, with every field's message."""
        cleaned = clean_params(self.params, raw)
        if self.validate is not None:
            self.validate(self.bind(cleaned))
        if restricted and self.restrict is not None:
            self.restrict(self.bind(cleaned))
        return cleaned

    def bind(self, params: Mapping[str, Any]) -> Params:
        """Cleaned (stored) params as the command's code reads them: typed,
        by key or attribute."""
        if isinstance(params, Params):
            params = params.to_dict()
        return Params(params, self.params)

    def build(self, params: Mapping[str, Any]) -> list[Step]:
        """The validated step list for these (cleaned) params."""
        spec = self.steps
        steps = list(spec(self.bind(params)) if callable(spec) else spec)
        check_graph(steps)
        return steps

    def step(
        self,
        func: StepFunc | None = None,
        *,
        title: str = "",
        after: Iterable[str | StepFunc] = (),
        unit: str = "steps",
        total: int | None = None,
    ) -> Any:
        """Decorator: add the function as a step (see `step_from_function`);
        it is returned unchanged, so it can still be called directly."""

        def add(func: StepFunc) -> StepFunc:
            if not isinstance(self.steps, list):
                raise GraphError(
                    f"Command {self.name!r} takes its steps from a function; "
                    "add steps there, not with @step."
                )
            step = step_from_function(
                func, title=title, after=after, unit=unit, total=total
            )
            known = {existing.id for existing in self.steps}
            if step.id in known:
                raise GraphError(f"Step id {step.id!r} is used twice.")
            for dependency in step.after:
                if dependency not in known:
                    raise GraphError(
                        f"Step {step.id!r} depends on {dependency!r}, which is "
                        f"not a step of {self.name} defined before it."
                    )
            self.steps.append(step)
            return func

        return add(func) if func is not None else add

    def describe(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "params": [param.describe() for param in self.params],
        }

    def usage(self) -> str:
        """The command and its params as text, one param a line, for a
        listing such as `manage.py execute --list`."""
        lines = [f"{self.name}  {self.title}"]
        rows = [param.row() for param in self.params]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        for row in rows:
            cells = [row[column].ljust(widths[column]) for column in range(4)]
            lines.append("  " + "  ".join([*cells, row[4]]).rstrip())
        if not rows:
            lines.append("  (no params)")
        return "\n".join(lines)


def check_graph(steps: Sequence[Step]) -> None:
    """Refuse duplicate ids, dependencies on unknown steps, and cycles."""
    if not steps:
        raise GraphError("A command needs at least one step.")
    ids: dict[str, Step] = {}
    for step in steps:
        if step.id in ids:
            raise GraphError(f"Step id {step.id!r} is used twice.")
        ids[step.id] = step
    for step in steps:
        for dependency in step.after:
            if dependency not in ids:
                raise GraphError(
                    f"Step {step.id!r} depends on unknown step {dependency!r}."
                )
    # Iterative depth-first search (a 1000-step chain must not hit the
    # recursion limit); meeting a node on the current path closes a cycle.
    done: set[str] = set()
    for root in ids:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(ids[root].after)]
        while stack:
            dependency = next(stack[-1], None)
            if dependency is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif dependency in on_path:
                cycle = path[path.index(dependency) :] + [dependency]
                raise GraphError(f"Steps form a cycle: {' -> '.join(cycle)}.")
            elif dependency not in done:
                path.append(dependency)
                on_path.add(dependency)
                stack.append(iter(ids[dependency].after))


class Registry:
    """Commands by name. Apps register theirs in a `cmds.py` module."""

    def __init__(self) -> None:
        self._cmds: dict[str, Cmd] = {}

    def register(self, cmd: Cmd) -> Cmd:
        existing = self._cmds.get(cmd.name)
        if existing is not None and existing is not cmd:
            raise ValueError(f"A command named {cmd.name!r} is already registered.")
        self._cmds[cmd.name] = cmd
        return cmd

    def unregister(self, name: str) -> None:
        self._cmds.pop(name, None)

    def get(self, name: str) -> Cmd:
        try:
            return self._cmds[name]
        except (KeyError, TypeError):
            raise UnknownCmd(str(name), self._cmds) from None

    def __iter__(self):
        return iter(sorted(self._cmds.values(), key=lambda cmd: cmd.name))

    def __contains__(self, name: object) -> bool:
        return name in self._cmds


registry = Registry()
register = registry.register
