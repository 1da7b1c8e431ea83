"""End to end, the pages an operator works in: the runs table (filters,
search, live rows, bulk interrupt, a phone), one long run (overall bar,
sticky actions, collapsed finished steps), the graph and the timeline, a
failed run, the interrupt history, dark mode; and the script's text agrees
with the server's."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from executions import services
from executions.conf import conf
from executions.models import Execution, Source, Status
from tests.e2e.test_browser import LIVE, STATUS, off_playwrights_thread

pytestmark = pytest.mark.e2e

EXECUTION_URL = re.compile(r".*/executions/([0-9a-f-]{36})/$")
FINISHED = 60_000  # ms: a generous bound for a short run to end


def start(page, daphne_url: str, cmd: str, **params) -> str:
    """Start `cmd` from the start page with `params`; return the new ID."""
    page.goto(f"{daphne_url}/executions/new/")
    page.select_option("#id_cmd", cmd)
    for name, value in params.items():
        if name in ("force_after", "timeout", "profile"):
            page.fill(f"#id_{name}", str(value))
            continue
        selector = f'[name="{cmd}.{name}"]'
        if isinstance(value, bool):
            page.set_checked(f"{selector}[type=checkbox]", value)
        elif page.locator(f"select{selector}").count():
            page.select_option(f"select{selector}", str(value))
        else:
            page.fill(selector, str(value))
    with page.expect_navigation(url=EXECUTION_URL):
        page.click("#start-form button[type=submit]")
    return EXECUTION_URL.match(page.url).group(1)


def recorded(user=None, cmd: str = "demo.steps", **params) -> Execution:
    """A run recorded by a terminal that never runs it (stays queued)."""
    return off_playwrights_thread(
        services.start_execution,
        cmd,
        params,
        user=user,
        source=Source.CLI,
        dispatch=False,
    ).execution


def texts(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


def shown_text(page) -> dict[str, list[str]]:
    """What the detail page says in the places both the server and the
    script write."""
    selectors = {
        "status": STATUS,
        "overall": "[data-field=overall]",
        "elapsed": "[data-field=elapsed]",
        "progress": "[data-step-id] [data-field=progress]",
        "step-status": "[data-step-id] [data-field=status]",
        "times": "#execution time",
        "title": "title",
    }
    return {name: texts(page, selector) for name, selector in selectors.items()}


def test_list_is_a_runs_table_that_fits_a_desktop_and_a_phone(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    for count in range(1, 8):
        recorded(alice, count=count)
    deploy = recorded(alice, "demo.deploy")
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(page, alice)

    page.goto(f"{daphne_url}/executions/")

    first = page.locator("#execution-list tbody tr").first
    expect(first).to_contain_text(str(deploy.id)[:8])
    assert first.bounding_box()["y"] < 400
    expect(page.locator("[data-count=queued] b")).to_have_text("8")
    page.screenshot(path=artifacts / "list-1280.png", full_page=True)

    page.fill("#filters input[name=q]", str(deploy.id)[:6])
    page.press("#filters input[name=q]", "Enter")

    expect(page.locator("#execution-list tbody tr")).to_have_count(1)
    expect(page.locator("#execution-list tbody tr")).to_contain_text("deploy")

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True
    ).new_page()
    log_in(phone, alice)
    phone.goto(f"{daphne_url}/executions/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    expect(phone.locator("#execution-list tbody tr").first).to_be_visible()
    phone.screenshot(path=artifacts / "list-390.png", full_page=True)


def test_list_shows_a_terminal_run_live_and_interrupts_in_bulk(
    browser, daphne_url, log_in, make_user
):
    alice = make_user("view", "add", "interrupt", username="alice")
    done = recorded(alice)
    off_playwrights_thread(
        services.request_interrupt, done.id, user=alice, source=Source.CLI
    )
    page = browser.new_context().new_page()
    log_in(page, alice)
    with page.expect_websocket() as socket:
        page.goto(f"{daphne_url}/executions/?status=queued")
    socket.value.expect_event("framereceived")

    fresh = recorded(alice, count=2)

    row = page.locator(f'tr[data-execution-id="{fresh.id}"]')
    expect(row).to_be_visible(timeout=LIVE)
    expect(page.locator(f'tr[data-execution-id="{done.id}"]')).to_have_count(0)

    row.locator("input[name=ids]").check()
    page.fill("#bulk-form input[name=reason]", "maintenance window")
    with page.expect_navigation():
        page.click("#bulk-form [data-role=bulk-interrupt]")

    expect(page.locator("#messages")).to_contain_text(
        "Interrupt requested for 1 execution."
    )
    fresh.refresh_from_db()
    assert fresh.status == Status.INTERRUPTED
    assert fresh.interrupt_reason == "maintenance window"
    assert fresh.interrupt_source == Source.WEB


def test_list_catches_up_with_a_run_created_before_its_socket_joined(
    browser, daphne_url, log_in, make_user
):
    """The page is rendered, a terminal records a run, the server relays its
    `created` to nobody, and only then does the page's socket join: its first
    snapshot is what tells the page to catch up."""
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context().new_page()
    log_in(page, alice)
    held = []
    page.route_web_socket(
        re.compile(r".*/ws/executions/$"), lambda socket: held.append(socket)
    )
    page.goto(f"{daphne_url}/executions/?status=queued")
    expect(page.locator("#execution-list tbody tr")).to_have_count(0)
    while not held:
        page.wait_for_timeout(20)

    fresh = recorded(alice)
    page.wait_for_timeout(4 * conf.RELAY_INTERVAL * 1000)  # relayed, unheard
    held[0].connect_to_server()

    expect(page.locator(f'tr[data-execution-id="{fresh.id}"]')).to_be_visible(
        timeout=LIVE
    )


def test_start_page_remembers_the_command_and_explains_strategies(
    browser, daphne_url, log_in, make_user
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context().new_page()
    log_in(page, alice)
    start(page, daphne_url, "demo.deploy", seconds=0.1)

    page.goto(f"{daphne_url}/executions/new/")

    expect(page.locator("#id_cmd")).to_have_value("demo.deploy")
    page.select_option("#id_strategy", "ignore")
    expect(page.locator("#strategy-help .chosen")).to_contain_text(
        "only a forced interrupt stops it"
    )


def test_long_run_has_an_overall_bar_sticky_actions_and_agrees_after_reload(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(page, alice)

    start(page, daphne_url, "demo.steps", count=200, seconds=0.02, ticks=2)

    expect(page.locator(STATUS)).to_have_text("succeeded", timeout=FINISHED)
    expect(page.locator("#outcome")).to_be_visible()
    expect(page.locator("#overall-text")).to_have_text("200 of 200 steps done · 100 %")
    assert page.title().startswith("succeeded · ")
    assert "%2315803d" in page.get_attribute("#favicon", "href")
    expect(page.locator("#step-rows .step").first).to_be_hidden()
    page.uncheck("#hide-finished")
    expect(page.locator("#step-rows .step").first).to_be_visible()
    page.screenshot(path=artifacts / "detail-200-steps.png", full_page=True)
    page.check("#hide-finished")
    page.mouse.wheel(0, 4000)
    expect(page.locator("#action-bar")).to_be_in_viewport()
    page.screenshot(path=artifacts / "detail-200-steps-scrolled.png")
    live = shown_text(page)

    page.reload()

    assert shown_text(page) == live
    expect(page.locator("#outcome details").first).not_to_have_attribute("open", "")


def test_deploy_shows_its_graph_and_timeline(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, alice)

    start(page, daphne_url, "demo.deploy", seconds=0.6)

    expect(page.locator(STATUS)).to_have_text("succeeded", timeout=FINISHED)
    expect(page.locator("#outcome")).to_be_visible()
    expect(page.locator("#step-graph .node")).to_have_count(6)
    expect(page.locator("#step-graph .edge")).to_have_count(6)
    expect(page.locator("#step-graph .node.status-succeeded")).to_have_count(6)
    expect(page.locator("#timeline .timeline-bar")).to_have_count(6)
    expect(
        page.locator('[data-timeline-id="s3_object"] .timeline-time')
    ).to_contain_text("s")
    page.locator("#graph-section").screenshot(path=artifacts / "deploy-graph.png")
    page.locator("#timeline-section").screenshot(path=artifacts / "deploy-timeline.png")


def test_failed_run_shows_the_error_and_the_outcome(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, alice)

    start(page, daphne_url, "demo.steps", count=3, seconds=0.2, fail_at=2)

    expect(page.locator(STATUS)).to_have_text("failed", timeout=FINISHED)
    expect(page.locator("#outcome")).to_be_visible()
    expect(page.locator("#overall-text")).to_have_text("1 of 3 steps done · 50 %")
    expect(page.locator("#outcome [data-field=outcome-kind]")).to_have_text("failed")
    expect(page.locator('[data-step-id="step-2"] [data-field=error]')).to_contain_text(
        "step 2 failed as asked"
    )
    expect(page.locator("#outcome [data-field=errors]")).to_contain_text("step-2")
    expect(page.locator("#resume-form")).to_be_visible()
    assert page.title().startswith("failed · ")
    page.screenshot(path=artifacts / "detail-failed.png", full_page=True)


def test_interrupt_history_shows_who_asked_who_forced_and_the_countdown(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    bob = make_user("view", "interrupt", username="bob")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, alice)
    execution_id = start(
        page,
        daphne_url,
        "demo.steps",
        count=3,
        seconds=30,
        ticks=30,
        cooperative=False,
        force_after=600,
    )
    expect(page.locator(STATUS)).to_have_text("running", timeout=LIVE)
    page.fill("#id_reason", "wrong branch")

    page.click("#interrupt-form [data-role=interrupt]")

    expect(page.locator(STATUS)).to_have_text("interrupting", timeout=LIVE)
    expect(page.locator("#force-countdown")).to_contain_text("forcing in ")
    expect(page.locator('[data-step-id="step-1"] [data-field=stopping]')).to_have_text(
        "stopping at its next checkpoint", timeout=LIVE
    )
    page.screenshot(path=artifacts / "detail-interrupting.png", full_page=True)

    off_playwrights_thread(
        services.request_interrupt,
        execution_id,
        user=bob,
        source=Source.API,
        force=True,
        reason="taking too long",
    )

    expect(page.locator(STATUS)).to_have_text("interrupted", timeout=LIVE)
    history = page.locator("#interrupt-history tbody tr[data-request]")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text("alice")
    expect(history.nth(0)).to_contain_text("Web page")
    expect(history.nth(0)).to_contain_text("graceful")
    expect(history.nth(0)).to_contain_text("wrong branch")
    expect(history.nth(1)).to_contain_text("bob")
    expect(history.nth(1)).to_contain_text("JSON API")
    expect(history.nth(1)).to_contain_text("forced")
    expect(history.nth(1)).to_contain_text("taking too long")
    expect(page.locator("#interrupt-history .delivered")).to_have_count(1)
    expect(page.locator("#force-countdown")).to_be_hidden()
    page.locator("#interrupt-info").screenshot(path=artifacts / "interrupt-history.png")


def test_dark_mode_follows_the_system(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context(
        viewport={"width": 1280, "height": 900}, color_scheme="dark"
    ).new_page()
    log_in(page, alice)

    start(page, daphne_url, "demo.deploy", seconds=0.3)

    expect(page.locator(STATUS)).to_have_text("succeeded", timeout=FINISHED)
    expect(page.locator("#outcome")).to_be_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 19, 26)"
    page.screenshot(path=artifacts / "detail-dark.png", full_page=True)
    page.goto(f"{daphne_url}/executions/")
    page.screenshot(path=artifacts / "list-dark.png", full_page=True)


def test_log_panel_streams_a_runs_lines_and_filters_by_step(
    browser, daphne_url, log_in, make_user, artifacts
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, alice)

    start(page, daphne_url, "demo.logs", lines=5, seconds=0.5)

    expect(page.locator(STATUS)).to_have_text("succeeded", timeout=FINISHED)
    lines = page.locator("#log-lines")
    expect(lines).to_contain_text("preparing 5 of 5")
    expect(lines).to_contain_text("a logging record from prepare")
    expect(lines).to_contain_text("all done")
    page.select_option("#log-step", "report")
    expect(page.locator("#log-lines .log-line:visible")).to_have_count(1)
    page.locator("#logs").screenshot(path=artifacts / "detail-logs.png")


def test_log_panel_stays_away_where_the_server_has_no_logs(
    browser, daphne_url, log_in, make_user
):
    alice = make_user("view", "add", "interrupt", username="alice")
    page = browser.new_context().new_page()
    page.route("**/logs/*", lambda route: route.fulfill(status=404, body="{}"))
    log_in(page, alice)

    start(page, daphne_url, "demo.logs", lines=2, seconds=0.2)

    expect(page.locator(STATUS)).to_have_text("succeeded", timeout=FINISHED)
    expect(page.locator("#logs")).to_be_hidden()
