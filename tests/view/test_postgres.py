"""The viewer over a PostgreSQL store (the same pages as on SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agentledger.eventstore import EventStore
from agentledger.view.app import create_app
from tests.support.pgserver import PostgresCluster
from tests.support.projects import agentledger, experiment_id, make_project
from tests.view.recorded import ESCAPED, INPUTS, _agent

pytestmark = pytest.mark.postgres


def test_pages_render_from_a_postgresql_store(pg_cluster: PostgresCluster, tmp_path: Path) -> None:
    url = pg_cluster.create_database()
    project = make_project(
        tmp_path / "p", agent=_agent("boom"), inputs=INPUTS, simulation={"model": "mock:echo"}
    )
    run = agentledger("run", "experiment", "--yes", cwd=project, store=url)
    assert run.returncode == 1, run.stderr  # the 'boom' runs fail
    experiment = experiment_id(run)
    store = EventStore.open(url, create=False, schema="require", readonly=True)
    try:
        with TestClient(create_app(store)) as client:
            for page in ("/", f"/experiments/{experiment}", f"/traces/{experiment}-000004"):
                assert client.get(page).status_code == 200, page
            assert ESCAPED in client.get(f"/traces/{experiment}-000002").text
            integrity = client.get(f"/experiments/{experiment}/integrity").text
            assert "<strong>Intact</strong>" in integrity
            with client.stream("GET", "/live?after=0") as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        assert line == f"data: {store.last_position()}"
                        break
    finally:
        store.close()
