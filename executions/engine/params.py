"""A command's params schema: typed, bounded, with defaults and choices.

Values arrive as JSON (API, browser) or as strings (`--param k=v` in a
terminal); `Param.clean()` accepts both and refuses anything else with a
message a user can act on. Cleaned values are plain JSON (they are stored
with the execution); `Params` is the typed view a command's code reads.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_NO_DEFAULT = object()
TYPES = {"int": int, "float": float, "bool": bool, "str": str}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# A param by one of these names could not be read as `params.<name>`.
_RESERVED = frozenset({"get", "items", "keys", "values", "to_dict"})


class ParamsError(ValueError):
    """Invalid params; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(
            "; ".join(f"{name}: {message}" for name, message in self.errors.items())
        )


@dataclass(frozen=True)
class Between:
    """Bounds for an int or float param, both inclusive:
    `Annotated[int, Between(1, 1000)]`."""

    min: float | None = None
    max: float | None = None


def Ge(minimum: float) -> Between:
    """At least `minimum`: `Annotated[int, Ge(1)]`."""
    return Between(min=minimum)


def Le(maximum: float) -> Between:
    """At most `maximum`: `Annotated[float, Le(1.0)]`."""
    return Between(max=maximum)


@dataclass(frozen=True)
class Param:
    """One param: its type (`int`, `float`, `bool` or `str`), default, help,
    bounds (`min`/`max`, numbers only), whether it takes null, and `choices`
    (the values allowed, in the order a form offers them). With `enum`, the
    choices are that Enum's values and code reads its members."""

    name: str
    type: str = "str"
    default: Any = _NO_DEFAULT
    help: str = ""
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    max_length: int = 4096
    choices: tuple[Any, ...] = ()
    enum: type[enum.Enum] | None = None

    def __post_init__(self) -> None:
        # Each mistake is refused here, where the command is defined, with
        # what to change, rather than met by the first user who starts it.
        where = f"Param {self.name!r}"
        if self.type not in TYPES:
            raise ValueError(f"{where}: unknown type {self.type!r}.")
        if self.name in _RESERVED or not self.name.isidentifier():
            raise ValueError(
                f"{where}: the name must be an identifier, not one of "
                f"{', '.join(sorted(_RESERVED))}."
            )
        if (self.min is not None or self.max is not None) and self.type not in (
            "int",
            "float",
        ):
            raise ValueError(f"{where}: only int and float params take bounds.")
        if self.enum is not None and not self.choices:
            values = tuple(member.value for member in self.enum)
            object.__setattr__(self, "choices", values)
        object.__setattr__(self, "choices", tuple(self.choices))
        kind = TYPES[self.type]
        for choice in self.choices:
            if type(choice) is not kind:
                raise ValueError(
                    f"{where}: choice {choice!r} is not of its type {self.type}."
                )
        if isinstance(self.default, enum.Enum):
            object.__setattr__(self, "default", self.default.value)
        if not self.required and not (self.default is None and self.nullable):
            try:
                self.clean(self.default)
            except ValueError as error:
                raise ValueError(
                    f"{where}: the default {self.default!r} is refused: {error}."
                ) from None

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    def describe(self) -> dict:
        """The schema as JSON, for forms and the API."""
        return {
            "name": self.name,
            "type": self.type,
            "default": None if self.required else self.default,
            "required": self.required,
            "nullable": self.nullable,
            "min": self.min,
            "max": self.max,
            "choices": list(self.choices),
            "help": self.help,
        }

    def row(self) -> tuple[str, str, str, str, str]:
        """(name, type, default, limits, help) as text, for a listing such as
        `manage.py execute --list`."""
        type_ = f"{self.type} or null" if self.nullable else self.type
        default = "(required)" if self.required else _text(self.default)
        if self.choices:
            limits = "one of: " + ", ".join(_text(choice) for choice in self.choices)
        elif self.min is not None and self.max is not None:
            limits = f"{_num(self.min)} to {_num(self.max)}"
        elif self.min is not None:
            limits = f"at least {_num(self.min)}"
        elif self.max is not None:
            limits = f"at most {_num(self.max)}"
        else:
            limits = ""
        return (self.name, type_, default, limits, self.help)

    def clean(self, value: Any) -> Any:
        """Return the value as its type, or raise ValueError saying why not."""
        blank = isinstance(value, str) and value.strip() in ("", "null")
        if value is None or blank:
            if self.nullable:
                return None
            raise ValueError("a value is required")
        if isinstance(value, enum.Enum) and self.enum is not None:
            value = value.value
        cleaned = getattr(self, f"_to_{self.type}")(value)
        if self.choices and cleaned not in self.choices:
            choices = ", ".join(_text(choice) for choice in self.choices)
            raise ValueError(f"must be one of: {choices}")
        if self.min is not None and cleaned < self.min:
            raise ValueError(f"must be at least {_num(self.min)}")
        if self.max is not None and cleaned > self.max:
            raise ValueError(f"must be at most {_num(self.max)}")
        return cleaned

    def typed(self, value: Any) -> Any:
        """A cleaned (JSON) value as code reads it: an Enum param's member."""
        if self.enum is None or value is None:
            return value
        return self.enum(value)

    def _to_int(self, value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError("must be a whole number")

    def _to_float(self, value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if isinstance(value, (int, float)):
            try:
                result = float(value)
            except OverflowError:  # a JSON integer beyond any float
                raise ValueError("must be a finite number") from None
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise ValueError("must be a number") from None
        else:
            raise ValueError("must be a number")
        if not math.isfinite(result):
            raise ValueError("must be a finite number")
        return result

    def _to_bool(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("must be true or false")

    def _to_str(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(value) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} characters")
        if "\x00" in value:
            # No path may hold one, and PostgreSQL cannot store one.
            raise ValueError("must not contain null characters")
        return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Params(Mapping[str, Any]):
    """A run's params, read-only and typed by their schema:
    `params["count"]` and `params.count` alike. An Enum param gives its
    member; `to_dict()` gives the JSON values as stored."""

    __slots__ = ("_values", "_schema")

    def __init__(
        self, values: Mapping[str, Any] | None = None, schema: Iterable[Param] = ()
    ) -> None:
        self._values = dict(values or {})
        self._schema = {param.name: param for param in schema}

    def __getitem__(self, name: str) -> Any:
        value = self._values[name]
        param = self._schema.get(name)
        return value if param is None else param.typed(value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            known = ", ".join(sorted(self._values)) or "none"
            message = f"No param {name!r}; the params are: {known}."
            raise AttributeError(message) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


def clean_params(schema: tuple[Param, ...], raw: Any) -> dict[str, Any]:
    """Validate raw params against a schema; raise ParamsError with every field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamsError({"params": "must be an object of name: value"})
    errors: dict[str, str] = {}
    known = {param.name for param in schema}
    for name in raw:
        if name not in known:
            errors[str(name)] = (
                f"unknown param; expected one of: {', '.join(sorted(known)) or 'none'}"
            )
    cleaned: dict[str, Any] = {}
    for param in schema:
        if param.name in raw:
            try:
                cleaned[param.name] = param.clean(raw[param.name])
            except ValueError as error:
                errors[param.name] = str(error)
        elif param.required:
            errors[param.name] = "a value is required"
        else:
            cleaned[param.name] = param.default
    if errors:
        raise ParamsError(errors)
    return cleaned
