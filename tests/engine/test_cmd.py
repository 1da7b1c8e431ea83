"""Commands, steps, the graph checks and the registry."""

from __future__ import annotations

import enum
import functools

import pytest

from executions.engine import (
    Cmd,
    GraphError,
    Param,
    ParamsError,
    Registry,
    Step,
    UnknownCmd,
)
from executions.engine.cmd import check_graph

from .steps import chain, noop


def graph_error(steps) -> str:
    with pytest.raises(GraphError) as error:
        check_graph(steps)
    return str(error.value)


# -- graph checks ----------------------------------------------------------------------


def test_check_graph_refuses_an_unknown_dependency():
    message = graph_error([noop("a"), noop("b", "a", "nowhere")])

    assert message == "Step 'b' depends on unknown step 'nowhere'."


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([noop("a", "a")], "Steps form a cycle: a -> a."),
        ([noop("a", "b"), noop("b", "a")], "Steps form a cycle: a -> b -> a."),
        (
            [noop("root"), noop("x", "root", "z"), noop("y", "x"), noop("z", "y")],
            "Steps form a cycle: x -> z -> y -> x.",
        ),
    ],
)
def test_check_graph_refuses_a_cycle_naming_its_steps(steps, message):
    assert graph_error(steps) == message


def test_check_graph_refuses_duplicate_ids():
    message = graph_error([noop("a"), noop("b"), noop("a")])

    assert message == "Step id 'a' is used twice."


def test_check_graph_refuses_no_steps():
    message = graph_error([])

    assert message == "A command needs at least one step."


def test_check_graph_accepts_a_1000_step_chain():
    steps = chain(*(f"s{number}" for number in range(1000)))

    check_graph(steps)

    assert steps[-1].after == ("s998",)


def test_check_graph_accepts_a_diamond():
    check_graph([noop("a"), noop("b", "a"), noop("c", "a"), noop("d", "b", "c")])


# -- steps -----------------------------------------------------------------------------


def test_step_defaults_its_title_to_its_id_and_keeps_after_as_a_tuple():
    step = Step("copy", lambda ctx: None, after=["scan"])

    assert (step.title, step.after, step.unit) == ("copy", ("scan",), "steps")


async def _async_step(ctx):
    return None


class _AsyncCall:
    async def __call__(self, ctx):
        return None


class _SyncCall:
    def __call__(self, ctx):
        return None


@pytest.mark.parametrize(
    ("func", "is_async"),
    [
        (_async_step, True),
        (functools.partial(_async_step), True),
        (_AsyncCall(), True),
        (functools.partial(_AsyncCall()), True),
        (lambda ctx: None, False),
        (lambda ctx: _async_step(ctx), False),
        (_SyncCall(), False),
        (functools.partial(_SyncCall()), False),
    ],
)
def test_step_knows_whether_it_is_async(func, is_async):
    assert Step("a", func).is_async is is_async


def test_step_inputs_are_dependencies_too():
    step = Step("publish", lambda ctx, fetch: None, after=["lint"], inputs=["fetch"])

    assert (step.after, step.inputs) == (("lint", "fetch"), ("fetch",))


def test_step_refuses_an_unknown_progress_unit():
    with pytest.raises(ValueError) as error:
        Step("a", lambda ctx: None, unit="furlongs")

    assert str(error.value) == "Unknown progress unit 'furlongs': use steps or bytes."


# -- commands --------------------------------------------------------------------------


def _steps_for(params):
    return chain(*(f"s{number}" for number in range(params["count"])))


def _at_most_three(params):
    if params["count"] > 3:
        raise ParamsError({"count": "this command counts to three"})


COUNTER = Cmd(
    name="test.count",
    title="Count",
    steps=_steps_for,
    params=[Param("count", "int", 2, "how many", min=1)],
    validate=_at_most_three,
)


def test_cmd_builds_its_steps_from_the_cleaned_params():
    steps = COUNTER.build(COUNTER.clean_params({"count": "3"}))

    assert [step.id for step in steps] == ["s0", "s1", "s2"]


def test_cmd_build_checks_the_graph():
    cmd = Cmd(name="test.loop", title="Loop", steps=[noop("a", "a")])

    with pytest.raises(GraphError) as error:
        cmd.build({})

    assert str(error.value) == "Steps form a cycle: a -> a."


def test_cmd_validate_runs_after_the_fields_are_clean():
    with pytest.raises(ParamsError) as error:
        COUNTER.clean_params({"count": 4})

    assert error.value.errors == {"count": "this command counts to three"}


def test_cmd_describe_is_its_schema_as_json():
    description = COUNTER.describe()

    assert description == {
        "name": "test.count",
        "title": "Count",
        "description": "",
        "params": [
            {
                "name": "count",
                "type": "int",
                "default": 2,
                "required": False,
                "nullable": False,
                "min": 1,
                "max": None,
                "choices": [],
                "help": "how many",
            }
        ],
    }


# -- the registry ----------------------------------------------------------------------


def test_registry_finds_a_registered_command():
    registry = Registry()

    registry.register(COUNTER)

    assert registry.get("test.count") is COUNTER
    assert "test.count" in registry
    assert list(registry) == [COUNTER]


def test_registry_refuses_a_second_command_with_the_same_name():
    registry = Registry()
    registry.register(COUNTER)
    impostor = Cmd(name="test.count", title="Other", steps=[noop("a")])

    with pytest.raises(ValueError) as error:
        registry.register(impostor)

    assert str(error.value) == "A command named 'test.count' is already registered."
    assert registry.get("test.count") is COUNTER


def test_registry_register_is_idempotent_for_the_same_command():
    registry = Registry()

    registry.register(COUNTER)
    registry.register(COUNTER)

    assert list(registry) == [COUNTER]


@pytest.mark.parametrize("name", ["test.nope", None, ["a", "list"]])
def test_registry_refuses_an_unknown_name_listing_the_known_ones(name):
    registry = Registry()
    registry.register(COUNTER)

    with pytest.raises(UnknownCmd) as error:
        registry.get(name)

    assert str(error.value) == (
        f"Unknown command {str(name)!r}. Known commands: test.count."
    )


def test_registry_lists_commands_by_name_and_forgets_unregistered_ones():
    registry = Registry()
    other = Cmd(name="test.a", title="A", steps=[noop("a")])
    registry.register(COUNTER)
    registry.register(other)

    registry.unregister("test.count")

    assert list(registry) == [other]


def test_cmd_usage_lists_its_params_one_a_line():
    cmd = Cmd(
        name="test.usage",
        title="Usage",
        steps=[noop("a")],
        params=[
            Param("src", "str", help="where from"),
            Param("count", "int", 5, "how many", min=1, max=1000),
            Param("colour", "str", None, nullable=True, choices=("blue", "green")),
        ],
    )

    assert cmd.usage().splitlines() == [
        "test.usage  Usage",
        "  src     str          (required)                       where from",
        "  count   int          5           1 to 1000            how many",
        "  colour  str or null  null        one of: blue, green",
    ]


def test_cmd_restrict_applies_only_to_a_restricted_clean():
    seen = []
    cmd = Cmd(
        name="test.limited",
        title="Limited",
        steps=[noop("a")],
        params=[Param("path", "str")],
        restrict=lambda params: seen.append(params.path),
    )

    cmd.clean_params({"path": "/srv"})
    cmd.clean_params({"path": "/etc"}, restricted=True)

    assert seen == ["/etc"]


class Mode(enum.Enum):
    FAST = "fast"


def test_cmd_bind_reads_stored_params_typed():
    cmd = Cmd(
        name="test.bind",
        title="Bind",
        steps=[noop("a")],
        params=[Param("mode", "str", "fast", enum=Mode)],
    )

    params = cmd.bind({"mode": "fast"})

    assert (params.mode, params["mode"], params.to_dict()) == (
        Mode.FAST,
        Mode.FAST,
        {"mode": "fast"},
    )
