"""The template tags the pages and the admin share: one badge, one
timestamp, one favicon for a state."""

from __future__ import annotations

from django.template import Context, Template


def render(source: str, **context) -> str:
    return Template("{% load execution_display %}" + source).render(Context(context))


def test_badge_names_the_state_and_explains_it():
    html = render('{% badge "complete" field="outcome-kind" %}')

    assert html == (
        '<span class="badge status-succeeded" data-field="outcome-kind" '
        'title="done">succeeded</span>'
    )


def test_timestamp_puts_utc_in_the_tooltip():
    html = render('{% timestamp "2025-01-31T12:00:05.000Z" field="created" %}')

    assert html == (
        '<time data-field="created" datetime="2025-01-31T12:00:05.000Z" '
        'title="2025-01-31 12:00:05 UTC">2025-01-31 12:00:05</time>'
    )
    assert render("{% timestamp none %}", none=None) == "<time></time>"


def test_favicon_is_a_dot_in_the_states_colour():
    assert "fill=%27%23dc2626%27" in render('{% favicon "failed" %}')
    assert "fill=%27%2315803d%27" in render('{% favicon "complete" %}')


def test_step_graph_draws_an_svg_with_a_node_per_step():
    steps = [
        {"id": i, "title": i, "after": after, "status": "pending"}
        for i, after in (("a", []), ("b", ["a"]), ("c", ["a"]))
    ]

    html = render("{% step_graph steps %}", steps=steps)

    assert html.count('class="node status-pending"') == 3
    assert html.count('class="edge"') == 2
    assert 'role="img"' in html
