"""A command's params schema: typed, bounded, with defaults.

Values arrive as JSON (API, browser) or as strings (`--param k=v` in a
terminal); `Param.clean()` accepts both and refuses anything else with a
message a user can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NO_DEFAULT = object()
TYPES = {"int": int, "float": float, "bool": bool, "str": str}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ParamsError(ValueError):
    """Invalid params; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(
            "; ".join(f"{name}: {message}" for name, message in self.errors.items())
        )


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "str"
    default: Any = _NO_DEFAULT
    help: str = ""
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    max_length: int = 4096

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"Param {self.name!r}: unknown type {self.type!r}.")

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
            "help": self.help,
        }

    def clean(self, value: Any) -> Any:
        """Return the value as its type, or raise ValueError saying why not."""
        blank = isinstance(value, str) and value.strip() in ("", "null")
        if value is None or blank:
            if self.nullable:
                return None
            raise ValueError("a value is required")
        cleaned = getattr(self, f"_to_{self.type}")(value)
        if self.min is not None and cleaned < self.min:
            raise ValueError(f"must be at least {_num(self.min)}")
        if self.max is not None and cleaned > self.max:
            raise ValueError(f"must be at most {_num(self.max)}")
        return cleaned

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
