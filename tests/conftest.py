"""Shared fixtures: a store on each backend (SQLite file, real PostgreSQL server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentledger.eventstore import EventStore
from tests.support.modelserver import ModelServer
from tests.support.pgserver import PostgresCluster, find_bindir

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed on this machine")
    cluster = PostgresCluster(bindir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL of an empty store on the parametrised backend."""
    if backend == "sqlite":
        return str(tmp_path / "ledger.db")
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    opened = EventStore.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (see tests/modelserver.py)."""
    with ModelServer() as server:
        yield server
