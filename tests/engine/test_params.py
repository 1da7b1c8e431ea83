"""Params: typed, bounded, defaulted; JSON values and terminal strings alike;
every field's error reported at once."""

from __future__ import annotations

import pytest

from executions.engine import Param, ParamsError
from executions.engine.params import clean_params

SCHEMA = (
    Param("count", "int", 5, min=1, max=1000),
    Param("seconds", "float", 1.0, min=0, max=0.5),
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
