"""End to end in the admin: a run started in the browser, watched in a
second window, interrupted with the admin's "Interrupt selected executions"
action; the watcher sees the report live, and the admin shows it too."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from executions.models import Execution, Source, Status
from tests.e2e.test_browser import LIVE, STATUS, outcome_lists, start_from_list

pytestmark = pytest.mark.e2e


def test_admin_action_interrupts_a_run_watched_in_another_window(
    browser, daphne_url, log_in, make_user, artifacts
):
    operator = make_user("view", "add", "interrupt", username="ops", is_staff=True)
    viewport = {"width": 1280, "height": 800}
    starter = browser.new_context(viewport=viewport)
    watcher = browser.new_context(viewport=viewport)
    page, watching = starter.new_page(), watcher.new_page()
    log_in(page, operator)
    log_in(watching, operator)
    execution_id = start_from_list(page, daphne_url, count=6, seconds=3.0)
    watching.goto(f"{daphne_url}/executions/{execution_id}/")
    expect(watching.locator(STATUS)).to_have_text("running", timeout=LIVE)

    page.goto(f"{daphne_url}/admin/executions/execution/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    results = "document.querySelector('#changelist .results')"
    assert page.evaluate(f"{results}.scrollWidth <= {results}.clientWidth")
    expect(page.locator(f'tr:has(input[value="{execution_id}"]) .badge')).to_have_text(
        "running"
    )
    page.screenshot(path=artifacts / "admin-changelist-1280.png", full_page=True)
    page.fill('input[name="reason"]', "from the admin")
    page.check(f'input[name="_selected_action"][value="{execution_id}"]')
    page.select_option('select[name="action"]', "interrupt_selected")
    page.click('button[name="index"]')

    expect(page.locator(".messagelist")).to_contain_text(
        "Interrupt requested for 1 execution."
    )
    expect(watching.locator(STATUS)).to_have_text("interrupted", timeout=LIVE)
    processed, not_processed = outcome_lists(watching)
    assert "step-6" in not_processed
    expect(watching.locator("[data-field=interrupt-source]")).to_have_text("Admin")
    watching.screenshot(
        path=artifacts / "admin-interrupted-watcher.png", full_page=True
    )
    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == Status.INTERRUPTED
    assert execution.interrupt_source == Source.ADMIN
    assert execution.interrupt_requested_by == operator
    assert execution.interrupt_reason == "from the admin"

    page.goto(f"{daphne_url}/admin/executions/execution/{execution_id}/change/")

    expect(page.locator("#content")).to_contain_text("interrupted")
    expect(page.locator("#content")).to_contain_text("step-6")
    page.screenshot(path=artifacts / "admin-change-page.png", full_page=True)
    starter.close()
    watcher.close()
