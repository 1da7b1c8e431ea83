"""The start form of the list page: one fieldset per registered command.

The form only gathers raw values from the POST and gives them back with the
service's errors attached. Validation stays in one place, the service (the
params schema, the strategy parser, the profile rule), so the page refuses
exactly what the API and the terminal refuse, with the same messages.

Without JavaScript every fieldset is shown and submitted; the form reads only
the inputs of the selected command, named `<cmd>.<param>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.http import QueryDict

from . import services

STRATEGIES = (
    ("finish-current", "finish-current"),
    ("poll-next-n", "poll-next-n:N"),
    ("ignore", "ignore"),
)
POLL_NEXT_N = "poll-next-n"
INPUT_TYPES = {"int": "number", "float": "number", "bool": "checkbox", "str": "text"}


@dataclass(frozen=True)
class Choice:
    """One option of an enumerated param's `<select>`."""

    value: str
    label: str
    selected: bool


@dataclass(frozen=True)
class ParamField:
    """One input of a command's fieldset, as the template renders it: a
    `<select>` of `options` for a param with choices, else an `<input>`."""

    name: str
    label: str
    type: str
    value: str
    checked: bool
    help: str
    required: bool
    nullable: bool
    min: float | None
    max: float | None
    error: str
    choices: tuple[str, ...] = ()

    @property
    def input_type(self) -> str:
        return "select" if self.choices else INPUT_TYPES[self.type]

    @property
    def options(self) -> list[Choice]:
        """The `<select>`'s options, the current value selected; a param that
        takes null offers an empty one, which the schema reads as null."""
        values = ([""] if self.nullable else []) + list(self.choices)
        return [Choice(value, value or "none", value == self.value) for value in values]

    @property
    def step(self) -> str:
        return "1" if self.type == "int" else "any"


@dataclass(frozen=True)
class CmdFieldset:
    """A registered command with its params' inputs."""

    name: str
    title: str
    description: str
    fields: list[ParamField]
    selected: bool


class StartForm:
    """The inputs of the start form, bound to a POST or showing defaults."""

    def __init__(self, data: QueryDict | None = None) -> None:
        self.data = data
        self.errors: dict[str, str] = {}
        self.non_field_errors: list[str] = []

    @property
    def is_bound(self) -> bool:
        return self.data is not None

    @property
    def cmd(self) -> str:
        if self.is_bound:
            return self.data.get("cmd", "")
        commands = services.commands()
        return commands[0].name if commands else ""

    @property
    def profile(self) -> str:
        return self._get("profile").strip()

    @property
    def strategy_kind(self) -> str:
        return self._get("strategy") or STRATEGIES[0][0]

    @property
    def strategy_n(self) -> str:
        return self._get("strategy_n").strip() or "1"

    @property
    def strategy(self) -> str:
        """The strategy as the service parses it: `poll-next-n:N` or a kind."""
        if self.strategy_kind == POLL_NEXT_N:
            return f"{POLL_NEXT_N}:{self.strategy_n}"
        return self.strategy_kind

    def start_args(self) -> dict[str, Any]:
        """The keyword arguments for `services.start_execution`."""
        return {
            "cmd": self.cmd,
            "params": self._params(),
            "profile": self.profile or None,
            "strategy": self.strategy,
            "timeout": self._get("timeout").strip() or None,
            "force_after": self._get("force_after").strip() or None,
        }

    @property
    def timeout(self) -> str:
        return self._get("timeout").strip()

    @property
    def force_after(self) -> str:
        return self._get("force_after").strip()

    def add_errors(self, errors: Mapping[str, str]) -> None:
        """Attach the service's errors (field → message) to the inputs."""
        params = self._selected_params()
        for key, message in errors.items():
            if key in params:
                self.errors[f"{self.cmd}.{key}"] = message
            elif key in ("cmd", "profile", "strategy", "timeout", "force_after"):
                self.errors[key] = message
            else:
                self.non_field_errors.append(f"{key}: {message}")

    def fieldsets(self) -> list[CmdFieldset]:
        return [
            CmdFieldset(
                name=cmd.name,
                title=cmd.title,
                description=cmd.description,
                fields=[self._field(cmd, param) for param in cmd.describe()["params"]],
                selected=cmd.name == self.cmd,
            )
            for cmd in services.commands()
        ]

    def strategies(self) -> tuple[tuple[str, str], ...]:
        return STRATEGIES

    def _get(self, name: str) -> str:
        return self.data.get(name, "") if self.is_bound else ""

    def _selected_params(self) -> set[str]:
        cmd = services.command(self.cmd)
        return set() if cmd is None else {param.name for param in cmd.params}

    def _params(self) -> dict[str, str]:
        """Raw strings of the selected command's inputs. An input that was
        not posted at all is left out, so the param's default applies."""
        cmd = services.command(self.cmd)
        if cmd is None:
            return {}
        return {
            param.name: self.data[f"{self.cmd}.{param.name}"]
            for param in cmd.params
            if f"{self.cmd}.{param.name}" in self.data
        }

    def _field(self, cmd, schema: dict[str, Any]) -> ParamField:
        name = f"{cmd.name}.{schema['name']}"
        if self.is_bound and cmd.name == self.cmd and name in self.data:
            # QueryDict.get gives the last value: the checkbox's "true" wins
            # over the hidden "false" sent before it.
            value = self.data.get(name)
        else:
            value = _display(schema["default"])
        return ParamField(
            name=name,
            label=schema["name"],
            type=schema["type"],
            value=value,
            checked=value == "true",
            help=schema["help"],
            required=schema["required"],
            nullable=schema["nullable"],
            min=schema["min"],
            max=schema["max"],
            error=self.errors.get(name, ""),
            choices=tuple(_display(choice) for choice in schema["choices"]),
        )


def _display(default: Any) -> str:
    """A default as the input shows it (booleans as the checkbox's value)."""
    if default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)
