"""Every page of the viewer, rendered from a log recorded by real (mock-model) runs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from agentledger.eventstore import EventStore
from agentledger.projections.compare import diff_experiments
from agentledger.projections.report import load_report
from agentledger.view.app import create_app
from tests.view.recorded import ESCAPED, HOSTILE, Recorded


@pytest.fixture
def client(store: EventStore) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as test_client:
        yield test_client


def get(client: TestClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.text[-2000:]
    return response.text


def summary_of(recorded: Recorded) -> dict:
    return orjson.loads((recorded.a_folder / "summary.json").read_bytes())


def test_list_shows_every_experiment_and_the_session(
    client: TestClient, recorded: Recorded
) -> None:
    page = get(client, "/")
    for ref in (recorded.a, recorded.b, recorded.multi):
        assert f'href="/experiments/{ref}"' in page
    assert f'href="/sessions/{recorded.session}"' in page


def test_list_filters_by_kind_status_and_text(client: TestClient, recorded: Recorded) -> None:
    sessions = get(client, "/?kind=session")
    assert recorded.session in sessions and recorded.a not in sessions
    by_id = get(client, f"/?q={recorded.b}")
    assert recorded.b in by_id and recorded.a not in by_id
    assert recorded.a not in get(client, "/?status=running")


def test_list_rejects_an_unknown_status_naming_the_valid_ones(client: TestClient) -> None:
    page = get(client, "/?status=done", 400)
    assert "status &#39;done&#39; is not one of running, completed, failed, interrupted" in page


def test_experiment_figures_are_those_of_summary_json(
    client: TestClient, recorded: Recorded
) -> None:
    summary = summary_of(recorded)
    page = get(client, f"/experiments/{recorded.a}")
    figure = re.search(r'id="fig-ok">(\d+)<', page)
    failed = re.search(r'id="fig-failed">(\d+)<', page)
    assert figure and failed
    assert int(figure.group(1)) == summary["successful"] == 4
    assert int(failed.group(1)) == summary["failed"] == 2
    assert f"{summary['model_calls']['total_tokens']}</span>" in page


def test_experiment_shows_a_histogram_percentiles_and_persona_chart(
    client: TestClient, recorded: Recorded
) -> None:
    page = get(client, f"/experiments/{recorded.a}")
    assert "<title>Duration histogram</title>" in page
    assert "<title>Success by persona</title>" in page
    assert re.search(r"p50 [\d.,]+ (ms|s) · p90 .* · p99 ", page)


def test_failures_are_grouped_by_error_with_their_traces(
    client: TestClient, recorded: Recorded
) -> None:
    page = get(client, f"/experiments/{recorded.a}")
    failures = page[page.index('id="failures"') : page.index('id="matrix"')]
    assert "<code>ValueError</code>" in failures
    assert '<td class="num">2</td>' in failures
    assert f"/traces/{recorded.a}-000004" in failures


def test_trace_matrix_filters_by_status_persona_and_text(
    client: TestClient, recorded: Recorded
) -> None:
    def traces(query: str) -> set[str]:
        page = get(client, f"/experiments/{recorded.a}?{query}")
        matrix = page[page.index('id="trace-matrix"') :]
        return set(re.findall(rf'href="/traces/({recorded.a}-\d+)"', matrix))

    assert len(traces("")) == 6
    assert traces("status=failed") == {f"{recorded.a}-000004", f"{recorded.a}-000005"}
    assert traces("persona=expert") == {f"{recorded.a}-000002", f"{recorded.a}-000003"}
    assert traces("q=NOTEBOOK") == {f"{recorded.a}-000000", f"{recorded.a}-000001"}
    assert traces("status=completed&persona=novice") == {
        f"{recorded.a}-000000",
        f"{recorded.a}-000001",
    }


def test_experiment_page_is_found_by_name_when_unique_and_named_when_not(
    client: TestClient, recorded: Recorded
) -> None:
    page = get(client, "/experiments/demo", 404)
    assert "several experiments are named &#39;demo&#39;" in page
    get(client, f"/experiments/{recorded.a_folder}")


def test_integrity_reports_an_intact_log(client: TestClient, recorded: Recorded) -> None:
    fragment = get(client, f"/experiments/{recorded.a}/integrity")
    assert "<strong>Intact</strong>" in fragment


def test_integrity_names_a_modified_event(recorded: Recorded, tmp_path: Path) -> None:
    import sqlite3

    from tests.view.recorded import copy_of

    path = copy_of(recorded, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE events SET data = replace(data, 'How do I', 'Why do I') "
            "WHERE stream_id = ? AND type = 'TraceStarted'",
            (f"trace-{recorded.a}-000000",),
        )
    damaged = EventStore.open(path, create=False, schema="require", readonly=True)
    try:
        with TestClient(create_app(damaged)) as client:
            fragment = get(client, f"/experiments/{recorded.a}/integrity")
    finally:
        damaged.close()
    assert "integrity problem(s)" in fragment
    assert f"modified: trace-{recorded.a}-000000 v1" in fragment


def test_trace_shows_model_call_messages_response_and_raw_events(
    client: TestClient, recorded: Recorded, store: EventStore
) -> None:
    trace_id = f"{recorded.a}-000000"
    page = get(client, f"/traces/{trace_id}")
    assert '<section class="call completed" id="call-0">' in page
    assert "How do I start a new notebook?" in page
    assert "<title>Timeline</title>" in page
    for ev in store.read_stream(f"trace-{trace_id}"):
        assert f'<tr id="event-{ev.position}">' in page
        assert f'title="{ev.hash}"' in page


def test_failed_trace_shows_its_error_and_traceback(client: TestClient, recorded: Recorded) -> None:
    page = get(client, f"/traces/{recorded.a}-000004")
    assert "Failure: ValueError (exception)" in page
    assert "Traceback (most recent call last)" in page
    assert "agent gave up on: boom: this one fails" in page


def test_a_retried_trace_shows_the_failed_attempt(client: TestClient, recorded: Recorded) -> None:
    page = get(client, f"/traces/{recorded.retried}-000000")
    retries = page[page.index("<h3>Retries</h3>") :]
    assert "<code>ConnectionError</code>" in retries
    assert "the first attempt loses its connection" in retries
    assert "second attempt: try me" in page
    assert "2 attempt(s)" in page
    timeline = page[page.index("<title>Timeline</title>") :]
    assert ">attempt 1<" in timeline and ">attempt 2<" in timeline


def test_multi_turn_trace_shows_each_turn_with_its_model_calls(
    client: TestClient, recorded: Recorded
) -> None:
    page = get(client, f"/traces/{recorded.multi}-000000")
    assert 'id="turn-0"' in page and 'id="turn-1"' in page
    assert "Supervisor: <strong>" in page
    turn = page[page.index('id="turn-1"') :]
    assert re.search(r'model calls: <a href="#call-\d+">', turn)
    call = page[page.index('id="call-0"') :]
    assert re.search(r"streamed, \d+ chunks joined", call)
    response = call[call.index("<h4>Response</h4>") :]
    assert '<pre class="text">hello there</pre>' in response.split("</section>")[0]


def test_session_page_shows_the_transcript_and_model_calls(
    client: TestClient, recorded: Recorded
) -> None:
    page = get(client, f"/sessions/{recorded.session}")
    assert "<h2>Transcript</h2>" in page
    assert 'id="turn-0"' in page
    assert re.search(r"Model calls \([1-9]\d*\)", page)


def test_diff_verdicts_are_those_of_agentledger_diff(
    client: TestClient, recorded: Recorded, store: EventStore
) -> None:
    expected = diff_experiments(
        recorded.a,
        load_report(store, recorded.a).traces,
        recorded.b,
        load_report(store, recorded.b).traces,
    )
    page = get(client, f"/diff?a={recorded.a}&b={recorded.b}")
    rows = page[page.index('id="diff-rows"') :]
    assert rows.count('<tr class="regression">') == expected.regressions == 2
    changed = rows.count('<tr class="changed">') + rows.count('<tr class="regression">')
    assert changed == len(expected.changed) == 4
    assert rows.count('<tr class="unchanged">') == 2
    changed_only = get(client, f"/diff?a={recorded.a}&b={recorded.b}&changed=1")
    assert '<tr class="unchanged">' not in changed_only


@pytest.mark.parametrize(
    "page",
    ["/experiments/{a}", "/traces/{a}-000002", "/sessions/{session}", "/diff?a={a}&b={b}"],
)
def test_a_recorded_script_is_shown_as_text(
    client: TestClient, recorded: Recorded, page: str
) -> None:
    url = page.format(a=recorded.a, b=recorded.b, session=recorded.session)
    body = get(client, url)
    assert ESCAPED in body
    assert HOSTILE not in body
    assert "<img src=x" not in body


def test_pages_carry_a_policy_that_allows_only_the_viewers_own_script(
    client: TestClient,
) -> None:
    response = client.get("/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_unknown_trace_is_a_404_naming_it(client: TestClient) -> None:
    assert "no trace &#39;nope&#39; in the log" in get(client, "/traces/nope", 404)


def test_a_bad_page_number_is_a_400_naming_it(client: TestClient, recorded: Recorded) -> None:
    body = get(client, f"/experiments/{recorded.a}?page=x", 400)
    assert "page &#39;x&#39; is not a page number" in body


def test_the_viewer_answers_get_only(client: TestClient) -> None:
    assert client.post("/").status_code == 405


def test_a_foreign_host_header_is_refused_on_loopback(store: EventStore) -> None:
    app = create_app(store, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    with TestClient(app, base_url="http://attacker.example") as client:
        assert client.get("/").status_code == 400
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "[::1]:8765"}).status_code == 200
        assert client.get("/", headers={"host": "localhost.attacker.example"}).status_code == 400


def test_a_token_is_required_then_kept_in_a_cookie(store: EventStore) -> None:
    with TestClient(create_app(store, token="s3cret")) as client:
        assert client.get("/").status_code == 401
        assert client.get("/?token=wrong").status_code == 401
        first = client.get("/?token=s3cret&kind=session", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/?kind=session"
        assert client.get("/").status_code == 200
    with TestClient(create_app(store, token="s3cret")) as client:
        assert client.get("/", headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_serving_every_page_leaves_the_store_file_unchanged(recorded: Recorded) -> None:
    files = sorted(Path(recorded.store).parent.glob("ledger.db*"))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    store = EventStore.open(recorded.store, create=False, schema="require", readonly=True)
    try:
        with TestClient(create_app(store)) as client:
            for url in (
                "/",
                f"/experiments/{recorded.a}",
                f"/experiments/{recorded.a}/integrity",
                f"/traces/{recorded.a}-000000",
                f"/sessions/{recorded.session}",
                f"/diff?a={recorded.a}&b={recorded.b}",
            ):
                get(client, url)
    finally:
        store.close()
    files = sorted(Path(recorded.store).parent.glob("ledger.db*"))
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert after == before


def test_evaluation_results_show_where_the_log_has_them(
    client: TestClient, recorded: Recorded
) -> None:
    listing = get(client, "/")
    row_a = listing[listing.index(f"<code>{recorded.a}</code>") :].split("</tr>")[0]
    assert "pass_rate=" in row_a
    row_b = listing[listing.index(f"<code>{recorded.b}</code>") :].split("</tr>")[0]
    assert "pass_rate=" not in row_b
    experiment = get(client, f"/experiments/{recorded.a}")
    assert 'id="evaluation"' in experiment and "TraceScored" in experiment
    assert 'id="evaluation"' not in get(client, f"/experiments/{recorded.b}")
    trace = get(client, f"/traces/{recorded.a}-000000")
    assert "TraceScored: verdict=PASS" in trace
    assert "TraceScored: verdict=FAIL" in get(client, f"/traces/{recorded.a}-000002")
    diff = get(client, f"/diff?a={recorded.a}&b={recorded.b}")
    assert "score: verdict=PASS" in diff


def test_a_long_trace_draws_and_lists_up_to_the_limits(
    client: TestClient, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentledger.view import pages

    monkeypatch.setattr(pages, "TIMELINE_BARS", 2)
    monkeypatch.setattr(pages, "ROWS_SHOWN", 3)
    page = get(client, f"/traces/{recorded.a}-000000")
    assert "more bars not drawn (the first 2 in time order are)" in page
    events = page[page.index('id="events"') :]
    assert events.count('<tr id="event-') == 3
    assert f"agentledger events list --stream trace-{recorded.a}-000000</code>" in events


def _first_finish(store: EventStore, experiment_id: str) -> int:
    return next(
        ev.position
        for ev in store.read_all(correlation_id=experiment_id)
        if ev.type in ("TraceCompleted", "TraceFailed")
    )


def test_as_of_in_the_address_shows_the_page_as_the_log_stood(
    client: TestClient, recorded: Recorded, store: EventStore
) -> None:
    point = _first_finish(store, recorded.a)
    page = get(client, f"/experiments/{recorded.a}?as_of={point}")
    assert f"as of log position {point}" in page
    assert re.search(r'id="fig-finished">1<', page)
    assert 'badge running">running</span>' in page
    assert f'href="/traces/{recorded.a}-000000?as_of={point}"' in page  # links keep the point
    assert f'<input type="hidden" name="as_of" value="{point}">' in page
    assert f'href="/experiments/{recorded.a}">back to the whole log</a>' in page
    assert 'data-live=""' in page
    listing = get(client, f"/?as_of={point}")
    assert recorded.a in listing and recorded.b not in listing


def test_a_raw_event_links_to_its_trace_as_of_that_event(
    client: TestClient, recorded: Recorded, store: EventStore
) -> None:
    events = store.read_stream(f"trace-{recorded.a}-000000")
    page = get(client, f"/traces/{recorded.a}-000000")
    assert f'<a href="?as_of={events[0].position}"' in page
    early = get(client, f"/traces/{recorded.a}-000000?as_of={events[0].position}")
    assert 'badge running">running</span>' in early
    assert early.count('<tr id="event-') == 1


def test_a_bad_as_of_in_the_address_is_a_400_naming_it(client: TestClient) -> None:
    body = get(client, "/?as_of=soon", 400)
    assert "as_of &#39;soon&#39; is neither a log position nor an ISO-8601 time" in body
