"""A real browser for the viewer's tests: Debian's headless Chromium driven by Playwright.

The tests skip only when /usr/bin/chromium is absent (``./dev.sh test`` installs it);
Playwright never downloads a browser here. Screenshots of each page go to
``$AGENTLEDGER_ARTIFACTS/screenshots`` when that is set, else to a pytest temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.projects import AGENTLEDGER
from tests.view.recorded import Recorded, record

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: while Playwright's sync API is started, this thread counts
    # as running an event loop, and any later test that runs an experiment in-process
    # would fail with "Cannot run the event loop while another loop is running".
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (./dev.sh test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("AGENTLEDGER_ARTIFACTS")
    folder = Path(base) / "screenshots" if base else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record(tmp_path_factory.mktemp("browserlog"))


@dataclass
class Viewer:
    """A running ``agentledger view`` and its address."""

    process: subprocess.Popen[str]
    url: str


def start_viewer(store: str, cwd: Path) -> Viewer:
    """``agentledger view --port 0`` on ``store``, once it printed its address."""
    process = subprocess.Popen(
        [AGENTLEDGER, "--store", store, "view", "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(5):
        line = process.stdout.readline()
        found = re.search(r"Open (http://\S+)", line)
        if found:
            return Viewer(process, found.group(1).rstrip("/"))
    process.terminate()
    raise AssertionError(f"agentledger view printed no address: {process.stderr.read()}")


def stop_viewer(viewer: Viewer) -> None:
    viewer.process.terminate()
    viewer.process.wait(timeout=15)


@pytest.fixture(scope="session")
def viewer(recorded: Recorded) -> Iterator[Viewer]:
    running = start_viewer(recorded.store, recorded.root)
    try:
        yield running
    finally:
        stop_viewer(running)


@dataclass
class Console:
    """Console errors and uncaught exceptions of a page."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> Any:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        return page


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Console]]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    console = Console()
    try:
        yield console.watch(context.new_page()), console
    finally:
        context.close()
