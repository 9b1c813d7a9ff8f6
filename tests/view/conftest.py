"""The recorded log every viewer test reads (recorded once per test session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentledger.eventstore import EventStore
from tests.view.recorded import Recorded, record


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record(tmp_path_factory.mktemp("viewlog"))


@pytest.fixture
def store(recorded: Recorded) -> Iterator[EventStore]:
    opened = EventStore.open(recorded.store, create=False, schema="require", readonly=True)
    try:
        yield opened
    finally:
        opened.close()
