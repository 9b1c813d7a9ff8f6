"""The redactor's quick pre-check agrees with what it stands for."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentledger.eventstore.redaction import _MARKERS, MARKER_WORDS, Redactor

FLAT = re.compile(MARKER_WORDS)
PIECES = st.sampled_from(
    ["key", "auth", "passw", "pwd", "secret", "token", "tokens", "cookie", "bearer", "basic ",
     "sig", "credential", "session", "passphrase", "a", "s", "t", "k", " ", '"', "x"]
)  # fmt: skip


@settings(max_examples=500, derandomize=True)
@given(st.lists(PIECES | st.text(max_size=4), max_size=8).map("".join))
@example("tokens")
@example("tokenx")
@example("basic")
def test_grouped_markers_match_exactly_where_the_word_list_does(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass").lower()
    assert bool(_MARKERS.search(data)) == bool(FLAT.search(data))


def test_registered_secrets_and_fields_are_found_by_the_pre_check() -> None:
    redactor = Redactor(fields=["X-Custom-Field"])
    assert not redactor.needs_scrub(b'{"output":"plain words"}')
    assert redactor.needs_scrub(b'{"x-custom-field":"v"}')
    assert redactor.needs_scrub(b'{"X_CUSTOM_FIELD":"v"}')
    redactor.add_secret("hunter2-long-value")
    assert redactor.needs_scrub(b'{"output":"says hunter2-long-value"}')
    assert redactor.scrub({"output": "says hunter2-long-value"}) == {"output": "says ***"}
