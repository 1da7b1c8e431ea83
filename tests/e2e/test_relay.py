"""Live without Redis: with the embedded default a terminal's run and the
server share only the database, yet a browser watching the server sees the
run appear, its bars move and its end, and a web interrupt reaches it.
(Real daphne, a real `manage.py execute`, Debian Chromium.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from executions.models import Execution, Status
from tests.processes import Process

pytestmark = pytest.mark.e2e

#: Well under the page's 15 s resync: what arrives within it was relayed.
RELAYED = 5_000  # ms


def bar_value(page, step_id: str) -> float:
    return page.eval_on_selector(
        f'[data-step-id="{step_id}"] progress', "bar => bar.value || 0"
    )


def test_a_terminal_run_is_live_in_the_browser(
    browser, daphne_url, log_in, make_user, subprocess_env, manage_py, artifacts
):
    watcher = make_user("view", "interrupt", username="watcher")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, watcher)
    page.goto(f"{daphne_url}/executions/")
    page.wait_for_timeout(500)  # the list socket is open
    terminal = Process(
        [*manage_py, "execute", "demo.steps"]
        + ["--param", "count=2", "--param", "seconds=30", "--param", "ticks=60"],
        subprocess_env,
    )
    try:
        execution_id = terminal.first_line()
        link = page.locator(f'a[href="/executions/{execution_id}/"]').first

        expect(link).to_be_visible(timeout=RELAYED)
        link.click()
        page.wait_for_url(f"**/executions/{execution_id}/")
        page.wait_for_function(
            "() => (document.querySelector('[data-step-id=\"step-1\"] progress')"
            " || {}).value > 0",
            timeout=RELAYED,
        )
        before = bar_value(page, "step-1")
        page.wait_for_function(
            f"() => document.querySelector('[data-step-id=\"step-1\"] progress')"
            f".value > {before}",
            timeout=RELAYED,
        )
        page.screenshot(path=artifacts / "relay-terminal-run.png")
        page.click("[data-role=interrupt]")
        code = terminal.wait(timeout=20)
        expect(page.locator("#execution h1 [data-field=status]")).to_have_text(
            "interrupted", timeout=RELAYED
        )
    finally:
        terminal.stop()

    assert code == 130
    row = Execution.objects.get(pk=execution_id)
    assert row.status == Status.INTERRUPTED
    assert row.interrupt_source == "web"
