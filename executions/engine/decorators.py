"""`@command`: a command from a function's signature, as Celery's
`@shared_task` and Prefect's `@flow` make tasks and flows.

The signature is the params schema: each parameter's type hint gives its
type (`int`, `float`, `bool`, `str`, a `Literal[...]` or an `enum.Enum`
subclass for choices, `X | None` to take null), its default the default,
and `Annotated[...]` adds bounds (`Between(1, 10)`, `Ge(1)`, `Le(9)`) and a
help text (a plain string). The function's body runs when the command is
started, with the typed params; raising ValueError or ParamsError refuses
them. Steps are added with `@cmd.step` (see `Cmd.step`).
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

from .cmd import Cmd, Registry, StepsSpec, registry
from .params import TYPES, Between, Param, Params, ParamsError

_NOTHING = inspect.Parameter.empty


def command(
    name: str,
    *,
    title: str = "",
    description: str | None = None,
    steps: StepsSpec | None = None,
    restrict: Callable[[Params], None] | None = None,
    registry: Registry | None = registry,
) -> Callable[[Callable[..., Any]], Cmd]:
    """Decorator: the function becomes the command `name`, registered in the
    engine's registry (or `registry`; None registers nowhere).

    `steps`: a list of Steps, or a function of the params returning one (a
    graph that depends on them); by default the steps added with
    `@cmd.step`. `restrict`: further checks for a run started from a shared
    door (see `Cmd.restrict`). The description defaults to the docstring.
    """

    def decorate(func: Callable[..., Any]) -> Cmd:
        schema = params_from_signature(func, where=f"Command {name!r}")
        doc = inspect.getdoc(func) or ""
        cmd = Cmd(
            name=name,
            title=title or name,
            steps=[] if steps is None else steps,
            params=schema,
            description=doc if description is None else description,
            validate=_validator(func),
            restrict=restrict,
        )
        if registry is not None:
            registry.register(cmd)
        return cmd

    return decorate


def _validator(func: Callable[..., Any]) -> Callable[[Params], None]:
    def validate(params: Params) -> None:
        try:
            func(**params)
        except ParamsError:
            raise
        except ValueError as error:
            raise ParamsError({"params": str(error)}) from None

    return validate


def params_from_signature(func: Callable[..., Any], *, where: str) -> tuple[Param, ...]:
    """The params schema a function's signature declares."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except NameError as error:
        raise TypeError(f"{where}: cannot read its type hints: {error}.") from None
    schema = []
    for parameter in inspect.signature(func).parameters.values():
        if parameter.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            raise TypeError(
                f"{where}: parameter {parameter.name!r} must be a named one, "
                "not *args, **kwargs or positional-only."
            )
        if parameter.name not in hints:
            raise TypeError(
                f"{where}: parameter {parameter.name!r} needs a type hint: int, "
                "float, bool, str, a Literal or an Enum (| None to take null)."
            )
        schema.append(
            _param(parameter.name, hints[parameter.name], parameter.default, where)
        )
    return tuple(schema)


def _param(name: str, hint: Any, default: Any, where: str) -> Param:
    options: dict[str, Any] = {}
    helps: list[str] = []
    hint = _unwrap(hint, options, helps)
    args = typing.get_args(hint)
    if _is_union(hint) and type(None) in args:
        options["nullable"] = True
        rest = [arg for arg in args if arg is not type(None)]
        hint = _unwrap(rest[0], options, helps) if len(rest) == 1 else hint
    if typing.get_origin(hint) is Literal:
        values = typing.get_args(hint)
        kinds = {type(value) for value in values}
        if len(kinds) != 1 or next(iter(kinds)) not in (str, int):
            raise TypeError(
                f"{where}: parameter {name!r}: a Literal's values must be all "
                "strings or all whole numbers."
            )
        options["choices"] = values
        type_name = "str" if str in kinds else "int"
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        kinds = {type(member.value) for member in hint}
        if len(kinds) != 1 or next(iter(kinds)) not in (str, int):
            raise TypeError(
                f"{where}: parameter {name!r}: the values of {hint.__name__} "
                "must be all strings or all whole numbers."
            )
        options["enum"] = hint
        type_name = "str" if str in kinds else "int"
    else:
        type_name = next((key for key, kind in TYPES.items() if kind is hint), None)
        if type_name is None:
            raise TypeError(
                f"{where}: parameter {name!r} has type {hint!r}; use int, float, "
                "bool, str, a Literal or an Enum (| None to take null)."
            )
    if default is None and not options.get("nullable"):
        raise TypeError(
            f"{where}: parameter {name!r} defaults to None; annotate it "
            f"`{type_name} | None` to take null."
        )
    if default is not _NOTHING:
        options["default"] = default
    try:
        return Param(name, type_name, help=" ".join(helps), **options)
    except ValueError as error:
        raise TypeError(f"{where}: {error}") from None


def _unwrap(hint: Any, options: dict[str, Any], helps: list[str]) -> Any:
    """Peel `Annotated[...]`, collecting its bounds and help text."""
    while typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, Between):
                if extra.min is not None:
                    options["min"] = extra.min
                if extra.max is not None:
                    options["max"] = extra.max
            elif isinstance(extra, str):
                helps.append(extra)
    return hint


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
