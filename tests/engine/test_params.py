"""Params: typed, bounded, defaulted; JSON values and terminal strings alike;
every field's error reported at once."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import pytest

from executions.engine import Between, Ge, Le, Param, Params, ParamsError, command
from executions.engine.params import clean_params

SCHEMA = (
    Param("count", "int", 5, min=1, max=1000),
    Param("seconds", "float", 1.0, min=0, max=60),
    Param("cooperative", "bool", True),
    Param("fail_at", "int", None, nullable=True),
    Param("src", "str"),
)


def errors_of(raw) -> dict[str, str]:
    with pytest.raises(ParamsError) as error:
        clean_params(SCHEMA, raw)
    return error.value.errors


def clean_error(param: Param, value) -> str:
    with pytest.raises(ValueError) as error:
        param.clean(value)
    return str(error.value)


@pytest.mark.parametrize(
    ("type_", "value", "cleaned"),
    [
        ("int", 3, 3),
        ("int", "3", 3),
        ("int", " 42 ", 42),
        ("int", 7.0, 7),
        ("float", "2.5", 2.5),
        ("float", 2, 2.0),
        ("bool", True, True),
        ("bool", "true", True),
        ("bool", "YES", True),
        ("bool", "1", True),
        ("bool", "false", False),
        ("bool", "off", False),
        ("str", "/srv/data", "/srv/data"),
    ],
)
def test_param_clean_accepts_json_values_and_terminal_strings(type_, value, cleaned):
    result = Param("p", type_).clean(value)

    assert result == cleaned
    assert type(result) is type(cleaned)


@pytest.mark.parametrize(
    ("type_", "value", "message"),
    [
        ("int", "three", "must be a whole number"),
        ("int", 2.5, "must be a whole number"),
        ("int", "3.0", "must be a whole number"),
        ("int", True, "must be a whole number"),
        ("int", [3], "must be a whole number"),
        ("float", "fast", "must be a number"),
        ("float", False, "must be a number"),
        ("float", "nan", "must be a finite number"),
        ("float", "inf", "must be a finite number"),
        ("bool", "maybe", "must be true or false"),
        ("bool", 1, "must be true or false"),
        ("str", 12, "must be a string"),
        ("str", {"a": 1}, "must be a string"),
    ],
)
def test_param_clean_refuses_the_wrong_type(type_, value, message):
    assert clean_error(Param("p", type_), value) == message


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (Param("n", "int", min=1, max=1000), 0, "must be at least 1"),
        (Param("n", "int", min=1, max=1000), "1001", "must be at most 1000"),
        (Param("s", "float", min=0, max=0.5), -0.1, "must be at least 0"),
        (Param("s", "float", min=0, max=0.5), 0.75, "must be at most 0.5"),
        (Param("t", "str", max_length=3), "abcd", "must be at most 3 characters"),
    ],
)
def test_param_clean_refuses_values_out_of_bounds(param, value, message):
    assert clean_error(param, value) == message


@pytest.mark.parametrize("value", [1, 1000, "500"])
def test_param_clean_accepts_the_bounds_themselves(value):
    assert Param("n", "int", min=1, max=1000).clean(value) == int(value)


@pytest.mark.parametrize("value", [None, "", "  ", "null"])
def test_param_clean_nullable_takes_none(value):
    assert Param("p", "int", nullable=True).clean(value) is None


@pytest.mark.parametrize("value", [None, "", "null"])
def test_param_clean_not_nullable_requires_a_value(value):
    assert clean_error(Param("p", "int"), value) == "a value is required"


def test_param_refuses_an_unknown_type():
    with pytest.raises(ValueError) as error:
        Param("p", "date")

    assert str(error.value) == "Param 'p': unknown type 'date'."


def test_param_describe_says_what_a_form_needs():
    required = Param("src", "str", help="where from")
    optional = Param("fail_at", "int", None, nullable=True, min=1)

    assert required.describe() == {
        "name": "src",
        "type": "str",
        "default": None,
        "required": True,
        "nullable": False,
        "min": None,
        "max": None,
        "choices": [],
        "help": "where from",
    }
    assert (optional.describe()["required"], optional.describe()["min"]) == (False, 1)


def test_clean_params_fills_defaults():
    cleaned = clean_params(SCHEMA, {"src": "/tmp"})

    assert cleaned == {
        "count": 5,
        "seconds": 1.0,
        "cooperative": True,
        "fail_at": None,
        "src": "/tmp",
    }


def test_clean_params_converts_terminal_strings():
    raw = {"count": "3", "seconds": "0.25", "cooperative": "false", "src": "x"}

    cleaned = clean_params(SCHEMA, raw)

    assert cleaned == {
        "count": 3,
        "seconds": 0.25,
        "cooperative": False,
        "fail_at": None,
        "src": "x",
    }


def test_clean_params_refuses_unknown_params():
    errors = errors_of({"src": "x", "colour": "red"})

    assert errors == {
        "colour": "unknown param; expected one of: cooperative, count, fail_at, "
        "seconds, src"
    }


def test_clean_params_collects_every_field_error():
    raw = {"count": 0, "seconds": "slow", "cooperative": "perhaps", "extra": 1}

    with pytest.raises(ParamsError) as error:
        clean_params(SCHEMA, raw)

    assert error.value.errors == {
        "extra": "unknown param; expected one of: cooperative, count, fail_at, "
        "seconds, src",
        "count": "must be at least 1",
        "seconds": "must be a number",
        "cooperative": "must be true or false",
        "src": "a value is required",
    }
    assert str(error.value).startswith("extra: unknown param; ")
    assert str(error.value).endswith("; src: a value is required")


@pytest.mark.parametrize("raw", [["count", 3], "count=3", 3])
def test_clean_params_refuses_params_that_are_not_an_object(raw):
    assert errors_of(raw) == {"params": "must be an object of name: value"}


def test_clean_params_treats_none_as_no_params():
    cleaned = clean_params((Param("count", "int", 5),), None)

    assert cleaned == {"count": 5}


def test_clean_params_of_an_empty_schema_names_none_expected():
    with pytest.raises(ParamsError) as error:
        clean_params((), {"x": 1})

    assert error.value.errors == {"x": "unknown param; expected one of: none"}


# -- choices and Enums -----------------------------------------------------------------


class Colour(enum.Enum):
    BLUE = "blue"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def test_param_clean_refuses_a_value_not_among_its_choices():
    param = Param("colour", "str", choices=("blue", "green"))

    assert clean_error(param, "red") == "must be one of: blue, green"


def test_param_clean_takes_int_choices_from_terminal_strings():
    assert Param("level", "int", choices=(1, 2)).clean(" 2 ") == 2


def test_param_enum_cleans_to_its_value_and_reads_as_its_member():
    param = Param("colour", "str", Colour.BLUE, enum=Colour)

    cleaned = param.clean(Colour.GREEN), param.clean("green")

    assert cleaned == ("green", "green")
    assert param.typed("green") is Colour.GREEN
    assert (param.choices, param.default) == (("blue", "green"), "blue")
    assert clean_error(param, "BLUE") == "must be one of: blue, green"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"type": "int", "default": 0, "min": 1},
            "the default 0 is refused: must be at least 1.",
        ),
        (
            {"type": "str", "default": "red", "choices": ("blue",)},
            "the default 'red' is refused: must be one of: blue.",
        ),
        ({"type": "str", "min": 1}, "only int and float params take bounds."),
        ({"type": "int", "choices": (1, "2")}, "choice '2' is not of its type int."),
        (
            {"type": "int", "default": None},
            "the default None is refused: a value is required.",
        ),
    ],
)
def test_param_refuses_a_definition_that_cannot_work(options, message):
    with pytest.raises(ValueError) as error:
        Param("p", **options)

    assert str(error.value) == f"Param 'p': {message}"


@pytest.mark.parametrize("name", ["items", "get", "has-dash"])
def test_param_refuses_a_name_params_could_not_give_as_an_attribute(name):
    with pytest.raises(ValueError) as error:
        Param(name)

    assert str(error.value) == (
        f"Param {name!r}: the name must be an identifier, not one of "
        "get, items, keys, to_dict, values."
    )


@pytest.mark.parametrize(
    ("param", "row"),
    [
        (
            Param("src", "str", help="where from"),
            ("src", "str", "(required)", "", "where from"),
        ),
        (Param("n", "int", 5, min=1, max=9), ("n", "int", "5", "1 to 9", "")),
        (
            Param("n", "int", None, min=1, nullable=True),
            ("n", "int or null", "null", "at least 1", ""),
        ),
        (Param("s", "float", 0.5, max=1.5), ("s", "float", "0.5", "at most 1.5", "")),
        (Param("on", "bool", True), ("on", "bool", "true", "", "")),
        (
            Param("c", "str", "blue", choices=("blue", "green")),
            ("c", "str", "blue", "one of: blue, green", ""),
        ),
    ],
)
def test_param_row_describes_it_for_a_listing(param, row):
    assert param.row() == row


# -- the typed view --------------------------------------------------------------------


def test_params_reads_by_key_and_attribute_typed_by_the_schema():
    schema = (Param("colour", "str", enum=Colour), Param("count", "int"))

    params = Params({"colour": "green", "count": 3}, schema)

    assert (params.colour, params["colour"]) == (Colour.GREEN, Colour.GREEN)
    assert (params.count, params["count"], dict(params)) == (
        3,
        3,
        {"colour": Colour.GREEN, "count": 3},
    )
    assert params.to_dict() == {"colour": "green", "count": 3}


def test_params_names_the_known_ones_for_an_unknown_attribute():
    params = Params({"count": 3, "src": "/tmp"})

    with pytest.raises(AttributeError) as error:
        params.cuont  # noqa: B018

    assert str(error.value) == "No param 'cuont'; the params are: count, src."


def test_params_is_read_only():
    params = Params({"count": 3})

    with pytest.raises(TypeError):
        params["count"] = 4  # type: ignore[index]


# -- bad input through a signature's schema --------------------------------------------


@command("test.release", registry=None)
def release(
    version: str,
    replicas: Annotated[int, Between(1, 10)] = 2,
    ratio: Annotated[float, Ge(0), Le(1)] = 0.5,
    colour: Literal["blue", "green"] = "blue",
    level: Level = Level.LOW,
    note: str | None = None,
    dry_run: bool = False,
) -> None:
    """Release something."""


def release_errors(raw) -> dict[str, str]:
    with pytest.raises(ParamsError) as error:
        release.clean_params(raw)
    return error.value.errors


def test_signature_schema_cleans_terminal_strings_to_json():
    raw = {
        "version": "1.2",
        "replicas": "3",
        "colour": "green",
        "level": "2",
        "note": "",
        "dry_run": "yes",
    }

    cleaned = release.clean_params(raw)

    assert cleaned == {
        "version": "1.2",
        "replicas": 3,
        "ratio": 0.5,
        "colour": "green",
        "level": 2,
        "note": None,
        "dry_run": True,
    }


def test_signature_schema_refuses_wrong_types():
    raw = {"version": 1.2, "replicas": "two", "ratio": "half", "dry_run": "maybe"}

    assert release_errors(raw) == {
        "version": "must be a string",
        "replicas": "must be a whole number",
        "ratio": "must be a number",
        "dry_run": "must be true or false",
    }


def test_signature_schema_refuses_values_out_of_bounds():
    raw = {"version": "1", "replicas": 11, "ratio": -0.1}

    assert release_errors(raw) == {
        "replicas": "must be at most 10",
        "ratio": "must be at least 0",
    }


def test_signature_schema_refuses_unknown_literal_and_enum_values():
    raw = {"version": "1", "colour": "red", "level": 3}

    assert release_errors(raw) == {
        "colour": "must be one of: blue, green",
        "level": "must be one of: 1, 2",
    }


def test_signature_schema_refuses_unknown_and_missing_params():
    assert release_errors({"replica": 3}) == {
        "replica": "unknown param; expected one of: colour, dry_run, level, note, "
        "ratio, replicas, version",
        "version": "a value is required",
    }
