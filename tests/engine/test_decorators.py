"""`@command` and `@cmd.step`: a command's schema from a signature, its
steps from functions, and a run where results flow to the steps that take
them."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Literal

import pytest

from executions.engine import (
    Between,
    Cmd,
    GraphError,
    OutcomeKind,
    Param,
    ParamsError,
    Registry,
    Scheduler,
    StepContext,
    command,
)

from .steps import HANG, noop


class Colour(enum.Enum):
    BLUE = "blue"
    GREEN = "green"


def test_command_registers_a_cmd_titled_and_described():
    registry = Registry()

    @command("test.hello", title="Say hello", registry=registry)
    def hello(name: str = "world"):
        """Greets someone."""

    assert isinstance(hello, Cmd)
    assert registry.get("test.hello") is hello
    assert (hello.title, hello.description) == ("Say hello", "Greets someone.")


def test_command_reads_the_params_schema_from_the_signature():
    @command("test.schema", registry=None)
    def schema(
        version: Annotated[str, "what to release"],
        replicas: Annotated[int, Between(1, 10), "how many"] = 2,
        colour: Literal["blue", "green"] = "blue",
        shade: Colour | None = None,
        level: Annotated[int | None, Between(min=0)] = None,
        dry_run: bool = False,
    ):
        pass

    assert schema.params == (
        Param("version", "str", help="what to release"),
        Param("replicas", "int", 2, "how many", min=1, max=10),
        Param("colour", "str", "blue", choices=("blue", "green")),
        Param("shade", "str", None, nullable=True, enum=Colour),
        Param("level", "int", None, nullable=True, min=0),
        Param("dry_run", "bool", False),
    )


def no_hint(count=3):
    pass


def wrong_type(when: list = ()):  # type: ignore[assignment]
    pass


def none_not_optional(count: int = None):  # type: ignore[assignment]
    pass


def mixed_literal(pick: Literal["a", 1] = "a"):
    pass


def splat(*names: str):
    pass


def bad_default(count: Annotated[int, Between(1, 3)] = 5):
    pass


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (
            no_hint,
            "parameter 'count' needs a type hint: int, float, bool, str, a "
            "Literal or an Enum (| None to take null).",
        ),
        (
            wrong_type,
            "parameter 'when' has type <class 'list'>; use int, float, bool, "
            "str, a Literal or an Enum (| None to take null).",
        ),
        (
            none_not_optional,
            "parameter 'count' defaults to None; annotate it `int | None` to "
            "take null.",
        ),
        (
            mixed_literal,
            "parameter 'pick': a Literal's values must be all strings or all "
            "whole numbers.",
        ),
        (
            splat,
            "parameter 'names' must be a named one, not *args, **kwargs or "
            "positional-only.",
        ),
        (
            bad_default,
            "Param 'count': the default 5 is refused: must be at most 3.",
        ),
    ],
)
def test_command_refuses_a_signature_it_cannot_make_a_schema_of(func, message):
    with pytest.raises(TypeError) as error:
        command("test.bad", registry=None)(func)

    assert str(error.value) == f"Command 'test.bad': {message}"


@command("test.check", registry=None)
def checked(low: int = 1, high: int = 2):
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if high == 13:
        raise ParamsError({"high": "is unlucky"})


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        ({"low": 3}, {"params": "low (3) is above high (2)"}),
        ({"high": 13}, {"high": "is unlucky"}),
    ],
)
def test_command_body_refuses_params_with_its_errors(raw, errors):
    with pytest.raises(ParamsError) as error:
        checked.clean_params(raw)

    assert error.value.errors == errors


def test_command_body_gets_typed_params():
    seen = []

    @command("test.typed", registry=None)
    def typed(colour: Colour = Colour.BLUE):
        seen.append(colour)

    typed.clean_params({"colour": "green"})

    assert seen == [Colour.GREEN]


# -- steps -----------------------------------------------------------------------------


def test_step_takes_its_id_title_and_dependencies_from_the_function():
    @command("test.steps", registry=None)
    def cmd():
        pass

    @cmd.step(unit="bytes")
    def fetch(ctx):
        """Fetch the build.

        Longer words."""

    @cmd.step
    def lint(ctx):
        pass

    @cmd.step(after=[lint])
    def publish(ctx, fetch):
        pass

    assert [(s.id, s.title, s.after, s.inputs, s.unit) for s in cmd.steps] == [
        ("fetch", "Fetch the build.", (), (), "bytes"),
        ("lint", "lint", (), (), "steps"),
        ("publish", "publish", ("lint", "fetch"), ("fetch",), "steps"),
    ]
    assert publish(None, fetch=1) is None  # still the plain function


def test_step_refuses_a_dependency_not_defined_before_it():
    @command("test.order", registry=None)
    def cmd():
        pass

    with pytest.raises(GraphError) as error:

        @cmd.step
        def publish(ctx, fetch):
            pass

    assert str(error.value) == (
        "Step 'publish' depends on 'fetch', which is not a step of test.order "
        "defined before it."
    )
    assert cmd.steps == []


def test_step_refuses_a_second_step_of_the_same_name():
    @command("test.twice", registry=None)
    def cmd():
        pass

    def fetch(ctx):
        pass

    cmd.step(fetch)

    with pytest.raises(GraphError) as error:
        cmd.step(fetch)

    assert str(error.value) == "Step id 'fetch' is used twice."


def test_step_refuses_a_function_without_a_context():
    @command("test.noctx", registry=None)
    def cmd():
        pass

    with pytest.raises(GraphError) as error:
        cmd.step(lambda: None)

    assert str(error.value) == (
        "Step '<lambda>' must take the step context first: def <lambda>(ctx, ...)."
    )


def test_step_refuses_a_command_whose_steps_come_from_a_function():
    @command("test.dynamic", steps=lambda params: [noop("a")], registry=None)
    def cmd():
        pass

    with pytest.raises(GraphError) as error:
        cmd.step(lambda ctx: None)

    assert str(error.value) == (
        "Command 'test.dynamic' takes its steps from a function; add steps "
        "there, not with @step."
    )


# -- a run -----------------------------------------------------------------------------


@command("test.release", title="Release", registry=None)
def release(
    version: str,
    replicas: Annotated[int, Between(1, 10)] = 2,
    colour: Colour = Colour.BLUE,
):
    pass


@release.step(title="Fetch the build", unit="bytes")
async def fetch(ctx: StepContext) -> dict:
    ctx.progress.total = 3
    ctx.progress.advance(3)
    return {"sha": "abc", "version": ctx.params.version}


@release.step
def scale(ctx: StepContext) -> int:
    return ctx.params.replicas * 2


@release.step(title="Publish")
def publish(ctx: StepContext, fetch: dict, scale: int) -> str:
    return f"{fetch['version']}@{fetch['sha']} x{scale} on {ctx.params.colour.value}"


async def test_command_run_passes_results_to_the_steps_that_take_them():
    params = release.clean_params({"version": "1.2", "colour": "green"})
    scheduler = Scheduler(release.build(params), release.bind(params))

    outcome = await asyncio.wait_for(scheduler.run(), HANG)

    assert outcome.kind is OutcomeKind.COMPLETE
    assert scheduler.results == {
        "fetch": {"sha": "abc", "version": "1.2"},
        "scale": 4,
        "publish": "1.2@abc x4 on green",
    }
