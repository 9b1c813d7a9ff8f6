"""The viewer and the HTML report in a real browser (headless Chromium)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, Viewer, start_viewer, stop_viewer
from tests.support.projects import AGENTLEDGER, make_project
from tests.view.recorded import HOSTILE, Recorded, copy_of

pytestmark = pytest.mark.slow

Page = tuple[Any, Console]


def pages_of(recorded: Recorded) -> dict[str, str]:
    a, b = recorded.a, recorded.b
    return {
        "list": "/",
        "experiment": f"/experiments/{a}",
        "experiment-filtered": f"/experiments/{a}?status=failed",
        "experiment-as-of": f"/experiments/{a}?as_of=10",
        "trace": f"/traces/{a}-000000",
        "trace-failed": f"/traces/{a}-000004",
        "trace-hostile": f"/traces/{a}-000002",
        "trace-multi-turn": f"/traces/{recorded.multi}-000000",
        "session": f"/sessions/{recorded.session}",
        "diff": f"/diff?a={a}&b={b}",
    }


def test_every_page_loads_without_console_errors(
    page: Page, viewer: Viewer, recorded: Recorded, artifacts: Path
) -> None:
    tab, console = page
    for name, path in pages_of(recorded).items():
        response = tab.goto(viewer.url + path)
        assert response is not None and response.status == 200, name
        tab.wait_for_load_state("networkidle")
        tab.screenshot(path=str(artifacts / f"view-{name}.png"), full_page=True)
    assert console.errors == []


def test_experiment_page_shows_its_integrity_check(
    page: Page, viewer: Viewer, recorded: Recorded
) -> None:
    tab, console = page
    tab.goto(f"{viewer.url}/experiments/{recorded.a}")
    tab.locator("#integrity strong", has_text="Intact").wait_for(timeout=15_000)
    assert console.errors == []


def test_navigate_list_experiment_trace_model_call(
    page: Page, viewer: Viewer, recorded: Recorded, artifacts: Path
) -> None:
    tab, console = page
    tab.goto(viewer.url + "/")
    tab.locator(f'a[href="/experiments/{recorded.a}"]').click()
    tab.wait_for_url(f"**/experiments/{recorded.a}")
    tab.locator("#trace-matrix").get_by_role("link", name=f"{recorded.a}-000000").click()
    tab.wait_for_url(f"**/traces/{recorded.a}-000000")
    tab.locator('svg.waterfall a[href="#call-0"]').click()
    tab.wait_for_url("**#call-0")
    call = tab.locator("#call-0")
    assert call.is_visible()
    assert "How do I start a new notebook?" in call.inner_text()
    assert tab.evaluate("document.querySelector(':target').id") == "call-0"
    tab.screenshot(path=str(artifacts / "view-model-call.png"))
    assert console.errors == []


@pytest.mark.parametrize("name", ["experiment", "trace-hostile", "session", "diff"])
def test_a_recorded_script_does_not_run(
    page: Page, viewer: Viewer, recorded: Recorded, name: str
) -> None:
    tab, console = page
    tab.goto(viewer.url + pages_of(recorded)[name])
    tab.wait_for_load_state("networkidle")
    assert tab.evaluate("typeof window.__pwned") == "undefined"
    assert tab.get_by_text("<script>window.__pwned=1</script>").first.is_visible()
    assert console.errors == []


SLOW_AGENT = """
import time

def run(input_text, persona, ctx):
    time.sleep(0.4)
    return "slowly: " + input_text
"""


def test_live_view_shows_a_running_experiments_progress(
    page: Page, recorded: Recorded, tmp_path: Path, artifacts: Path
) -> None:
    store = copy_of(recorded, tmp_path / "store")
    project = make_project(
        tmp_path / "live",
        agent=SLOW_AGENT,
        inputs=[{"input": f"question {n}", "persona": "novice"} for n in range(4)],
        iterations=4,
        simulation={"name": "live_run", "model": "mock:echo"},
    )
    viewer = start_viewer(store, tmp_path)
    run = subprocess.Popen(
        [AGENTLEDGER, "--store", store, "run", "experiment", "--yes"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    tab, console = page
    try:
        tab.goto(viewer.url + "/")
        link = tab.get_by_role("link", name="live_run")
        link.wait_for(timeout=30_000)  # the list refreshes itself when the run starts
        link.click()
        tab.wait_for_selector("#fig-finished")
        tab.evaluate("window.__sameDocument = true")
        first = int(tab.locator("#fig-finished").inner_text())
        assert first < 16, "the run finished before the page could watch it"
        # (wait_for_function would evaluate a string, which the page's policy forbids)
        expect(tab.locator("#fig-finished")).not_to_have_text(str(first), timeout=30_000)
        assert int(tab.locator("#fig-finished").inner_text()) > first
        tab.screenshot(path=str(artifacts / "view-live-running.png"), full_page=True)
        tab.locator("h1 .badge.completed").wait_for(timeout=60_000)
        assert tab.locator("#fig-finished").inner_text() == "16"
        assert tab.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
        tab.screenshot(path=str(artifacts / "view-live-completed.png"), full_page=True)
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=15)
        stop_viewer(viewer)
    assert console.errors == []


def test_html_report_opens_from_file_with_networking_disabled(
    browser: Any, recorded: Recorded, artifacts: Path
) -> None:
    context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
    console = Console()
    tab = console.watch(context.new_page())
    requests: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    try:
        report = (recorded.a_folder / "report.html").resolve()
        tab.goto(report.as_uri())
        rows = tab.locator("#trace-matrix tbody tr")
        assert rows.count() == 6
        tab.locator("#f-status").select_option("failed")
        assert rows.count() == 2
        tab.locator("#f-status").select_option("")
        tab.get_by_role("link", name=f"{recorded.a}-000002").click()
        detail = tab.locator("#trace-detail")
        detail.wait_for()
        assert HOSTILE in detail.inner_text()
        assert tab.evaluate("typeof window.__pwned") == "undefined"
        tab.screenshot(path=str(artifacts / "report-trace.png"), full_page=True)
        time.sleep(0.2)
    finally:
        context.close()
    assert console.errors == []
    assert requests and all(url.startswith("file://") for url in requests)
