"""Commands: named graphs of steps, and the registry that finds them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .params import Param, clean_params
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
    """One unit of work. `func(ctx)` may be `async def` or a plain `def`
    (run in a thread). `after` names the steps it depends on."""

    id: str
    func: StepFunc
    title: str = ""
    after: tuple[str, ...] = ()
    unit: str = "steps"
    total: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", tuple(self.after))
        # Refused here, where the command is defined, not mid-run.
        check_unit(self.unit)
        if not self.title:
            object.__setattr__(self, "title", self.id)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)


StepsSpec = Sequence[Step] | Callable[[dict[str, Any]], Sequence[Step]]


@dataclass(frozen=True)
class Cmd:
    """A command: a name such as `demo.steps`, a title, a params schema and
    its steps (a list, or a function of the cleaned params returning one)."""

    name: str
    title: str
    steps: StepsSpec
    params: tuple[Param, ...] = ()
    description: str = ""
    # Checks on the cleaned params as a whole; raise ParamsError to refuse.
    validate: Callable[[dict[str, Any]], None] | None = field(default=None)
    # Further checks when started from a shared door (web, API, admin) rather
    # than a terminal, whose user already has the shell; ParamsError refuses.
    restrict: Callable[[dict[str, Any]], None] | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))

    def clean_params(self, raw: Any) -> dict[str, Any]:
        cleaned = clean_params(self.params, raw)
        if self.validate is not None:
            self.validate(cleaned)
        return cleaned

    def build(self, params: dict[str, Any]) -> list[Step]:
        """The validated step list for these (cleaned) params."""
        steps = list(self.steps(params) if callable(self.steps) else self.steps)
        check_graph(steps)
        return steps

    def describe(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "params": [param.describe() for param in self.params],
        }


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
