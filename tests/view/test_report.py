"""report html: one self-contained file, rebuilt byte for byte, escaped."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from agentledger.eventstore import EventStore
from agentledger.projections.report import load_report
from agentledger.view.report import render_report
from tests.support.projects import agentledger
from tests.view.recorded import ESCAPED, HOSTILE, Recorded


def test_report_html_is_the_file_the_run_wrote(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = agentledger(
        "report", "html", recorded.b, "-o", str(out), cwd=tmp_path, store=recorded.store
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (recorded.b_folder / "report.html").read_bytes()


def test_report_html_adds_the_evaluation_recorded_since(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = agentledger(
        "report", "html", recorded.a, "-o", str(out), cwd=tmp_path, store=recorded.store
    )
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert '<section id="evaluation">' in html and "EvaluationCompleted" in html
    assert '"scores":{"' + recorded.a + '-000000":"verdict=PASS' in html
    folder = (recorded.a_folder / "report.html").read_text()
    assert '<section id="evaluation">' not in folder


def test_report_rebuild_writes_the_same_report_html(recorded: Recorded, tmp_path: Path) -> None:
    result = agentledger(
        "report",
        "rebuild",
        recorded.a,
        "--output-dir",
        str(tmp_path / "f"),
        cwd=tmp_path,
        store=recorded.store,
    )
    assert result.returncode == 0, result.stderr
    rebuilt = (tmp_path / "f" / "report.html").read_bytes()
    assert rebuilt == (recorded.a_folder / "report.html").read_bytes()


def test_report_needs_no_network(recorded: Recorded) -> None:
    html = (recorded.a_folder / "report.html").read_text()
    found = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert found
    policy = unescape(found.group(1))
    assert policy.startswith("default-src 'none'; style-src 'sha256-")
    assert "unsafe-inline" not in policy and "connect-src" not in policy
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert '<link rel="stylesheet"' not in html


def test_report_escapes_recorded_text_in_markup_and_data(recorded: Recorded) -> None:
    html = (recorded.a_folder / "report.html").read_text()
    assert HOSTILE not in html
    assert "</script><img" not in html
    data = html[html.index('id="report-data">') :]
    assert "\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e" in data
    assert ESCAPED not in data  # JSON escapes, not HTML entities, inside the data block


def test_report_as_of_a_point_holds_fewer_traces(store: EventStore, recorded: Recorded) -> None:
    first = next(
        ev.position
        for ev in store.read_all(correlation_id=recorded.a)
        if ev.type in ("TraceCompleted", "TraceFailed")
    )
    early = load_report(store, recorded.a, first)
    html = render_report(early.experiment, early.traces, as_of=first).decode()
    assert f"as of log position {first}" in html
    assert '"rows":[["' + recorded.a + '-000000"' in html
    assert recorded.a + "-000001" not in html


def test_report_details_only_the_first_traces_beyond_the_limit(
    store: EventStore, recorded: Recorded
) -> None:
    loaded = load_report(store, recorded.a)
    html = render_report(loaded.experiment, loaded.traces, detail_limit=2).decode()
    assert "the first 2 in plan order carry their full detail" in html
    details = html[html.index('"details":{') : html.index('"inputs":')]
    assert recorded.a + "-000001" in details and recorded.a + "-000002" not in details


def test_report_html_refuses_to_overwrite_without_force(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("mine")
    result = agentledger(
        "report", "html", recorded.a, "-o", str(out), cwd=tmp_path, store=recorded.store
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: --output {out} exists; pass --force to overwrite it"
    assert out.read_text() == "mine"


def test_report_html_of_an_unknown_experiment_is_one_line(
    recorded: Recorded, tmp_path: Path
) -> None:
    result = agentledger("report", "html", "nope", cwd=tmp_path, store=recorded.store)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no experiment 'nope'" in result.stderr


def test_report_html_as_of_to_stdout(recorded: Recorded, store: EventStore, tmp_path: Path) -> None:
    first = next(
        ev.position
        for ev in store.read_all(correlation_id=recorded.a)
        if ev.type in ("TraceCompleted", "TraceFailed")
    )
    result = agentledger(
        "report",
        "html",
        recorded.a,
        "--as-of",
        str(first),
        "-o",
        "-",
        cwd=tmp_path,
        store=recorded.store,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<!doctype html>")
    assert f"as of log position {first}" in result.stdout
    assert not (tmp_path / "-").exists() and not (tmp_path / "report.html").exists()
