"""Threads an agent leaves going after its run returns: what they record within a second
of the experiment's end is kept; later, it is dropped with a warning and nothing waits."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentledger.eventstore import EventStore
from tests.support.projects import agentledger, make_project

pytestmark = pytest.mark.slow

LATE_OBSERVER = """
import threading
import time


def run(input_text, ctx):
    if "second" in input_text:
        def later():
            time.sleep({delay})
            for i in range({count}):
                ctx.observe("late", i=i)

        threading.Thread(target=later).start()
    return input_text
"""


def late_observations(store_url: str) -> int:
    with EventStore.open(store_url, create=False) as store:
        return sum(
            1 for e in store.read_all(types=["ObservationRecorded"]) if e.data["name"] == "late"
        )


def test_a_thread_observing_shortly_after_its_run_is_recorded(
    tmp_path: Path, store_url: str
) -> None:
    agent = LATE_OBSERVER.format(delay=0.3, count=200)
    project = make_project(tmp_path / "proj", agent=agent, iterations=1)
    result = agentledger("run", "experiment", "--yes", cwd=project, store=store_url)
    assert result.returncode == 0, result.stderr
    assert late_observations(store_url) == 200
    assert agentledger("verify", cwd=project, store=store_url).returncode == 0


def test_a_library_caller_is_not_held_by_a_thread_observing_long_after(tmp_path: Path) -> None:
    """Beyond the grace its observations are dropped (said once), and the call returns:
    nothing blocks however many arrive (more than the writer would ever queue)."""
    agent = LATE_OBSERVER.format(delay=1.5, count=6000)
    project = make_project(tmp_path / "proj", agent=agent, iterations=1)
    store = tmp_path / "api.db"
    code = textwrap.dedent(
        f"""
        import agentledger
        result = agentledger.run_experiment({str(project)!r}, store={str(store)!r})
        print("done", result.successful)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "done 3" in done.stdout
    assert "arrived after the experiment ended" in done.stderr
    assert late_observations(str(store)) == 0
