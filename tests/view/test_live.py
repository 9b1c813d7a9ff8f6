"""/live: server-sent events announcing log positions, from the store's subscribe."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from agentledger.eventstore import EventStore
from agentledger.view import app as view_app
from agentledger.view.app import create_app
from tests.view.recorded import Recorded


def first_lines(client: TestClient, url: str, until: str) -> list[str]:
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith(until):
                return lines
    raise AssertionError(f"the stream ended before a line starting {until!r}: {lines}")


def test_live_announces_the_position_of_new_events(store: EventStore) -> None:
    with TestClient(create_app(store)) as client:
        lines = first_lines(client, "/live?after=0", "data:")
    assert lines[-1] == f"data: {store.last_position()}"


def test_live_scoped_to_an_experiment_ignores_other_streams(
    store: EventStore, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view_app, "LIVE_IDLE_SECONDS", 0.3)
    last_of_a = max(ev.position for ev in store.read_all(correlation_id=recorded.a))
    assert store.last_position() > last_of_a  # other experiments and the session came later
    with TestClient(create_app(store)) as client:
        lines = first_lines(client, f"/live?after={last_of_a}&experiment={recorded.a}", ":")
    assert lines[-1] == ": idle"
    assert not any(line.startswith("data:") for line in lines)


def test_nothing_is_live_as_of_a_fixed_point(store: EventStore) -> None:
    with TestClient(create_app(store, until=5)) as client:
        response = client.get("/live?after=0")
    assert response.status_code == 400
    assert "as of a fixed point: nothing is live" in response.text


def test_live_rejects_a_position_that_is_not_one(store: EventStore) -> None:
    with TestClient(create_app(store)) as client:
        response = client.get("/live?after=x")
    assert response.status_code == 400
    assert "after=&#39;x&#39; is not a log position" in response.text
