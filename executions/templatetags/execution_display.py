"""Template tags and filters for executions: the pages and the admin say
things through these, so both say them the same way (`executions.display`
holds the words and formats; the small templates under
`executions/display/` hold the markup).

    {% load execution_display %}
    {% badge execution.status field="status" %}
    {% timestamp execution.created_at field="created" %}
    {{ step.progress|progress_text }}
"""

from __future__ import annotations

from django import template
from django.utils.html import json_script

from .. import display

register = template.Library()


@register.inclusion_tag("executions/display/badge.html")
def badge(state: str | None, field: str = "", big: bool = False) -> dict:
    """A run's, a step's or an outcome's state as a coloured badge."""
    state = display.state_of_outcome(state)
    return {
        "state": state,
        "help": display.STATE_HELP.get(state, ""),
        "field": field,
        "big": big,
    }


@register.inclusion_tag("executions/display/timestamp.html")
def timestamp(iso: str | None, field: str = "") -> dict:
    """`<time>` in local time, UTC in its tooltip, the instant in `datetime`."""
    local, utc = display.timestamp(iso)
    return {"iso": iso or "", "local": local, "utc": utc, "field": field}


@register.inclusion_tag("executions/display/graph.html")
def step_graph(steps: list[dict]) -> dict:
    """The step DAG as inline SVG (no script needed to draw it)."""
    return {"graph": display.graph(steps), "count": len(steps)}


@register.inclusion_tag("executions/display/timeline.html")
def step_timeline(execution: dict) -> dict:
    """The Gantt chart of the steps: queue wait and running time."""
    return display.timeline(execution)


@register.simple_tag
def favicon(state: str | None = None) -> str:
    """A `data:` URL of a dot in the state's colour, for the tab's icon."""
    return display.favicon(display.state_of_outcome(state))


@register.simple_tag
def vocabulary_json() -> str:
    """The words and explanations, for the pages' script."""
    return json_script(display.vocabulary(), "execution-vocabulary")


@register.filter
def outcome_state(kind: str | None) -> str:
    return display.state_of_outcome(kind)


@register.filter
def state_help(state: str | None) -> str:
    return display.STATE_HELP.get(display.state_of_outcome(state), "")


@register.filter
def source_label(source: str | None) -> str:
    return display.source_label(source)


@register.filter
def strategy_help(strategy: str | None) -> str:
    return display.strategy_help(strategy)


@register.filter
def progress_text(progress: dict) -> str:
    return display.progress_text(progress)


@register.filter
def step_bar(step: dict) -> dict | None:
    return display.progress_bar(step)


@register.filter
def percent(step: dict) -> int:
    return int(100 * display.fraction(step))


@register.filter
def elapsed(item: dict) -> str:
    """How long a run or a step has taken (so far)."""
    return display.elapsed(item.get("started_at"), item.get("finished_at"))


@register.filter
def overall(steps: list[dict]) -> dict:
    return display.overall(steps)


@register.simple_tag
def query_link(page, **changes) -> str:
    """The list page's own query string with `changes` (None drops a key)."""
    return page.link(**changes)


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key) if mapping else None


@register.filter
def short_id(execution_id: object) -> str:
    return str(execution_id)[:8]
