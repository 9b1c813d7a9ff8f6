"""The inputs file as a projection: plan order, drops counted, FluxLoop's shape, exact text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agentledger.events.generation import PlannedInput
from agentledger.experiments.plan import load_inputs
from agentledger.generation.inputsfile import fold_generation, recorded_generation, render

SETTINGS = {
    "config_name": "demo",
    "mode": "llm",
    "model": {"provider": "openai", "name": "gen-test"},
    "strategies": ["typo", "verbose"],
    "base_inputs": [{"input": "a"}, {"input": "b"}],
    "personas": [{"name": "novice_user"}],
    "variation_count": 1,
    "limit": None,
    "user_prompt_template": "Vary {input}",
}


class Event(NamedTuple):
    type: str
    data: dict[str, Any]
    schema_version: int = 1


def planned(index: int, persona: str | None = "novice_user") -> dict[str, Any]:
    return PlannedInput(
        index=index,
        base_index=index // 2,
        persona=persona,
        persona_description="new" if persona else None,
        strategy=("typo", "verbose")[index % 2],
        prompt_hash=f"{index:016x}",
    ).model_dump()


def started(count: int, persona: str | None = "novice_user") -> Event:
    return Event(
        "InputsGenerationStarted",
        {
            "generation_id": "gen123",
            "settings": SETTINGS,
            "plan": [planned(i, persona) for i in range(count)],
            "output": "/tmp/out.yaml",
            "started_at": "2026-12-02T10:11:12.123456Z",
        },
    )


def answer(index: int, text: str) -> Event:
    return Event("InputGenerated", {"index": index, "input": text})


def test_entries_follow_plan_order_whatever_order_the_answers_came_in() -> None:
    events = [started(4), answer(3, "d"), answer(0, "a"), answer(2, "c"), answer(1, "b")]
    view = fold_generation(events)
    assert view is not None
    assert [(e.planned.index, e.input) for e in view.entries] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
        (3, "d"),
    ]


def test_empty_and_duplicate_answers_are_dropped_and_counted() -> None:
    events = [
        started(5),
        answer(0, "Export my notes"),
        answer(1, "  "),
        answer(2, "export   MY notes"),
        answer(3, "Something else"),
        Event("InputGenerationFailed", {"index": 4, "error_type": "HTTP500", "error_message": "x"}),
    ]
    view = fold_generation(events)
    assert view is not None
    assert [e.input for e in view.entries] == ["Export my notes", "Something else"]
    assert (view.empty, view.duplicates, view.failed) == (1, 1, 1)
    assert view.first_failure == "#4 (base 2, typo, novice_user): HTTP500: x"


def test_the_same_text_for_two_personas_is_no_duplicate() -> None:
    first = started(2)
    first.data["plan"][1]["persona"] = "expert_user"
    view = fold_generation([first, answer(0, "same"), answer(1, "same")])
    assert view is not None and len(view.entries) == 2


def test_file_has_fluxloops_entries_stats_and_the_generation_id() -> None:
    view = fold_generation([started(2), answer(0, "first"), answer(1, "second")])
    assert view is not None
    text = render(view)
    assert text.startswith(
        "# " + "=" * 67 + "\n# Generated User Inputs: 2026-12-02 10:11:12 UTC\n"
        "# Model: openai/gen-test\n"
    )
    data = yaml.safe_load(text)
    assert data["inputs"][0] == {
        "input": "first",
        "strategy": "typo",
        "base_index": 0,
        "persona": "novice_user",
        "persona_description": "new",
        "prompt_hash": "0000000000000000",
    }
    assert list(data["inputs"][1]) == list(data["inputs"][0])
    assert data["stats"]["total_generated"] == 2
    assert data["novice_user"] == ["[typo] first", "[verbose] second"]
    assert data["generation_config"] == {
        "config_name": "demo",
        "generation_mode": "llm",
        "provider": "openai",
        "model": "gen-test",
        "strategies": ["typo", "verbose"],
        "variation_count": 1,
        "prompt": "Vary {input}",
        "generation_id": "gen123",
    }


def test_entries_without_persona_leave_the_persona_keys_out() -> None:
    view = fold_generation([started(1, persona=None), answer(0, "x")])
    assert view is not None
    assert set(yaml.safe_load(render(view))["inputs"][0]) == {
        "input",
        "strategy",
        "base_index",
        "prompt_hash",
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1), min_size=1, max_size=4), st.text(min_size=1))
def test_any_text_reads_back_exactly(texts: list[str], persona: str) -> None:
    texts = [t.replace("\ud800", "") for t in texts]  # the store never holds lone surrogates
    persona = "".join(c for c in persona if not 0xD800 <= ord(c) <= 0xDFFF) or "p"
    events = [started(len(texts), persona)] + [answer(i, t) for i, t in enumerate(texts)]
    view = fold_generation(events)
    assert view is not None
    data = yaml.safe_load(render(view))
    assert [row["input"] for row in data["inputs"]] == [e.input for e in view.entries]
    assert all(row["persona"] == persona for row in data["inputs"])


def test_run_experiment_reads_the_file_with_persona_and_metadata(tmp_path: Path) -> None:
    view = fold_generation([started(2), answer(0, "first"), answer(1, "second")])
    assert view is not None
    path = tmp_path / "generated.yaml"
    path.write_text(render(view))
    loaded = load_inputs(path)
    assert [(i.input, i.persona) for i in loaded] == [
        ("first", "novice_user"),
        ("second", "novice_user"),
    ]
    assert loaded[0].metadata == {
        "strategy": "typo",
        "base_index": 0,
        "persona_description": "new",
        "prompt_hash": "0000000000000000",
    }
    assert recorded_generation(path) == "gen123"


def test_a_file_written_otherwise_names_no_generation(tmp_path: Path) -> None:
    path = tmp_path / "inputs.yaml"
    path.write_text("inputs:\n- input: hello\n")
    assert recorded_generation(path) is None


def test_an_output_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    import os

    from agentledger.generation.output import OutputExistsError, check_output

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(OutputExistsError, match="is not a regular file"):
        check_output(fifo, overwrite=True)


def test_a_file_written_meanwhile_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    from agentledger.generation.output import OutputExistsError, write_file

    target = tmp_path / "generated.yaml"
    target.write_text("theirs\n")
    with pytest.raises(OutputExistsError, match="written by another process meanwhile"):
        write_file(target, "ours\n", overwrite=False)
    assert target.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["generated.yaml"]
