"""End to end: a real daphne and headless Chromium. Start an execution from
the list page, watch its bars advance live, interrupt it, and see the same
outcome in every tab and after a reload; and the same without JavaScript."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from playwright.sync_api import expect

from executions import services
from executions.models import Execution, Source

pytestmark = pytest.mark.e2e

EXECUTION_URL = re.compile(r".*/executions/([0-9a-f-]{36})/$")
LIVE = 10_000  # ms: a generous bound for something that should appear live
STATUS = "#execution h1 [data-field=status]"


def start_from_list(page, daphne_url: str, **params) -> str:
    """Fill the start form for demo.steps and submit it; return the ID."""
    page.goto(f"{daphne_url}/executions/new/")
    page.select_option("#id_cmd", "demo.steps")
    for name, value in params.items():
        selector = f'[name="demo.steps.{name}"]'
        if isinstance(value, bool):
            page.set_checked(f"{selector}[type=checkbox]", value)
        else:
            page.fill(selector, str(value))
    with page.expect_navigation(url=EXECUTION_URL):
        page.click("#start-form button[type=submit]")
    return EXECUTION_URL.match(page.url).group(1)


def step(page, step_id: str, field: str):
    return page.locator(f'[data-step-id="{step_id}"] [data-field="{field}"]')


def bar_value(page, step_id: str) -> float:
    return page.eval_on_selector(
        f'[data-step-id="{step_id}"] progress', "bar => bar.value"
    )


def off_playwrights_thread(func, *args, **kwargs):
    """Call `func` in a thread of its own. The service's after-commit
    broadcast uses async_to_sync, which refuses to run in this thread while
    Playwright's loop counts as running here."""

    def call():
        try:
            return func(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(call).result()


def outcome_lists(page) -> tuple[str, str]:
    return (
        page.inner_text("#outcome [data-field=processed]"),
        page.inner_text("#outcome [data-field=not-processed]"),
    )


def test_browser_start_watch_and_interrupt_live(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    bob = make_user("view", username="bob")
    viewport = {"width": 1280, "height": 1000}
    page = browser.new_context(viewport=viewport).new_page()
    other = browser.new_context(viewport=viewport).new_page()
    log_in(page, alice)
    log_in(other, bob)

    # Steps long enough that the checks before the click fit in the run.
    execution_id = start_from_list(page, daphne_url, count=6, seconds=2)

    # Bob's list shows the new execution without a reload.
    expect(other.locator(f'tr[data-execution-id="{execution_id}"]')).to_be_visible(
        timeout=LIVE
    )
    other.goto(f"{daphne_url}/executions/{execution_id}/")
    expect(other.locator("#interrupt-form")).to_have_count(0)
    page.evaluate("window.sameDocument = true")
    page.wait_for_function(
        """() => document.querySelector('[data-step-id="step-2"] progress').value > 0
        """,
        timeout=LIVE,
    )
    expect(step(page, "step-1", "status")).to_have_text("succeeded")
    expect(step(page, "step-1", "progress")).to_have_text("10 / 10")
    expect(page.locator(STATUS)).to_have_text("running")
    page.screenshot(path=artifacts / "detail-running.png", full_page=True)

    page.click("#interrupt-form [data-role=interrupt]")

    expect(page.locator(STATUS)).to_have_text("interrupted", timeout=LIVE)
    expect(page.locator("#outcome")).to_be_visible()
    processed, not_processed = outcome_lists(page)
    assert "step-1" in processed
    assert "step-6" in not_processed
    assert "step-1" not in not_processed
    expect(page.locator("#interrupt-form")).to_be_hidden()
    expect(page.locator("[data-field=interrupt-by]")).to_have_text("alice")
    expect(page.locator("[data-field=interrupt-source]")).to_have_text("Web page")
    assert page.evaluate("window.sameDocument") is True
    expect(other.locator(STATUS)).to_have_text("interrupted", timeout=LIVE)
    assert outcome_lists(other) == (processed, not_processed)
    assert bar_value(other, "step-6") == 0
    page.screenshot(path=artifacts / "detail-interrupted.png", full_page=True)

    page.reload()

    expect(page.locator(STATUS)).to_have_text("interrupted")
    assert outcome_lists(page) == (processed, not_processed)
    expect(page.locator("#connection")).to_be_hidden()


def test_browser_force_while_the_interrupt_is_pending(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, alice)
    # Steps that ignore checkpoints: an interrupt waits for step 1 to end.
    start_from_list(page, daphne_url, count=3, seconds=8, ticks=8, cooperative=False)
    expect(page.locator(STATUS)).to_have_text("running", timeout=LIVE)

    page.click("#interrupt-form [data-role=interrupt]")

    expect(page.locator(STATUS)).to_have_text("interrupting", timeout=LIVE)
    expect(page.locator("#interrupt-form [data-role=interrupt]")).to_have_text(
        "Interrupting…"
    )
    expect(page.locator("#interrupt-form [data-role=interrupt]")).to_be_disabled()
    page.screenshot(path=artifacts / "detail-interrupting.png", full_page=True)

    page.click("#interrupt-form [data-role=force]")

    expect(page.locator(STATUS)).to_have_text("interrupted", timeout=LIVE)
    expect(step(page, "step-1", "status")).to_have_text("interrupted")
    expect(page.locator("[data-field=interrupt-force]")).to_have_text("yes")


def test_browser_interrupt_form_works_without_javascript(
    browser, daphne_url, log_in, make_user
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context(java_script_enabled=False).new_page()
    log_in(page, alice)
    execution_id = start_from_list(page, daphne_url, count=3, seconds=6)
    deadline = time.monotonic() + 10
    while page.inner_text(STATUS) == "queued" and time.monotonic() < deadline:
        time.sleep(0.2)
        page.reload()
    expect(page.locator(STATUS)).to_have_text("running")

    with page.expect_navigation():
        page.click("#interrupt-form [data-role=interrupt]")

    expect(page.locator("#messages")).to_have_text(
        "Interrupt requested: the execution stops at its next safe point."
    )
    deadline = time.monotonic() + 10
    while page.inner_text(STATUS) != "interrupted" and time.monotonic() < deadline:
        time.sleep(0.2)
        page.reload()
    expect(page.locator(STATUS)).to_have_text("interrupted")
    _, not_processed = outcome_lists(page)
    assert "step-3" in not_processed
    execution = Execution.objects.get(pk=execution_id)
    assert execution.interrupt_source == Source.WEB
    assert execution.interrupt_requested_by == alice


def test_browser_reconnects_and_takes_the_servers_snapshot(
    browser, daphne, log_in, make_user
):
    alice = make_user("view", "add", "interrupt", username="alice")
    # Queued and never dispatched: it waits until someone interrupts it.
    execution = off_playwrights_thread(
        services.start_execution,
        "demo.steps",
        {"count": 2},
        user=alice,
        source=Source.CLI,
        dispatch=False,
    ).execution
    page = browser.new_context().new_page()
    log_in(page, alice)
    with page.expect_websocket() as socket:
        page.goto(f"{daphne.url}/executions/{execution.id}/")
    socket.value.expect_event("framereceived")
    page.evaluate("window.sameDocument = true")
    daphne.stop()
    expect(page.locator("#connection")).to_have_text(
        "Disconnected — reconnecting…", timeout=LIVE
    )
    off_playwrights_thread(
        services.request_interrupt,
        execution.id,
        user=alice,
        source=Source.CLI,
        reason="while you were away",
    )

    daphne.start()

    expect(page.locator("#connection")).to_be_hidden(timeout=LIVE)
    expect(page.locator(STATUS)).to_have_text("interrupted")
    expect(page.locator("[data-field=interrupt-reason]")).to_have_text(
        "while you were away"
    )
    _, not_processed = outcome_lists(page)
    assert "step-2" in not_processed
    assert page.evaluate("window.sameDocument") is True
