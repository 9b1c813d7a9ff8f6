"""Inputs and the experiment plan: which slots an experiment runs, in plan order.

A slot is one (input index, iteration) pair; the persona comes with the input. Slots are
numbered in plan order (input index, then iteration), and a trace id is derived from the
experiment id and the slot number, so it is stable across retries and ``--resume``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agentledger.errors import ConfigError, InputsError
from agentledger.events.payloads import ExperimentPlan, PlanInput
from agentledger.eventstore.redaction import MASK
from agentledger.experiments.config import ExperimentSettings, load_yaml
from agentledger.replay.args import ArgsRecording, set_path

_ITEM_KEYS = ("input", "persona", "metadata")


def _item(raw: Any, number: int, path: Path) -> tuple[str, str | None, dict[str, Any]]:
    """One inputs-file item; keys other than input/persona/metadata join the metadata,
    unless they look like a misspelling of one of those."""
    if isinstance(raw, str):
        return raw, None, {}
    if not isinstance(raw, dict):
        raise InputsError(f"{path}: item {number} must be a mapping with an 'input' key")
    for key in raw:
        if key not in _ITEM_KEYS:
            near = difflib.get_close_matches(str(key), _ITEM_KEYS, n=1, cutoff=0.75)
            if near:
                raise InputsError(
                    f"{path}: item {number} has unknown key '{key}'; did you mean '{near[0]}'?"
                )
    text = raw.get("input")
    if not isinstance(text, str):
        raise InputsError(f"{path}: item {number} needs an 'input' string")
    persona = raw.get("persona")
    if persona is not None and not isinstance(persona, str):
        raise InputsError(f"{path}: item {number}: 'persona' must be a persona name")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputsError(f"{path}: item {number}: 'metadata' must be a mapping")
    extra = {k: v for k, v in raw.items() if k not in _ITEM_KEYS}
    return text, persona, {**extra, **metadata}


def load_inputs(path: Path) -> list[PlanInput]:
    """Every item of an inputs file (``inputs:`` or ``generated_inputs:``), indexed from 0."""
    if path.exists() and not path.is_file():
        raise InputsError(f"inputs file {path} is not a file; pass --inputs a YAML file")
    if not path.is_file():
        raise InputsError(f"inputs file {path} not found; generate it or pass --inputs FILE")
    try:
        data = load_yaml(path, "inputs file")
    except ConfigError as exc:
        raise InputsError(str(exc)) from None
    items = data.get("inputs", data.get("generated_inputs"))
    if items is None:
        raise InputsError(f"{path}: expected an 'inputs:' or 'generated_inputs:' list")
    if not isinstance(items, list):
        raise InputsError(f"{path}: 'inputs' must be a list of items")
    if not items:
        raise InputsError(f"{path}: the inputs list is empty; add at least one input")
    planned = []
    for index, raw in enumerate(items):
        text, persona, metadata = _item(raw, index + 1, path)
        planned.append(PlanInput(index=index, input=text, persona=persona, metadata=metadata))
    return planned


def build_plan(
    settings: ExperimentSettings, recordings: list[ArgsRecording] | None = None
) -> ExperimentPlan:
    """Load the inputs, apply the persona filter and fix the plan. With argument replay,
    each input runs with each of ``recordings``, the input written into its arguments."""
    inputs = load_inputs(Path(settings.inputs_file))
    known = sorted(
        {str(p["name"]) for p in settings.personas} | {i.persona for i in inputs if i.persona}
    )
    if settings.persona_filter:
        unknown = [p for p in settings.persona_filter if p not in known]
        if unknown:
            listing = ", ".join(known) if known else "none (inputs have no personas)"
            raise InputsError(f"unknown persona '{unknown[0]}' in --personas; known: {listing}")
        inputs = [i for i in inputs if i.persona in settings.persona_filter]
        if not inputs:
            raise InputsError(
                f"no input in {settings.inputs_file} has persona "
                f"{', '.join(settings.persona_filter)}"
            )
    personas = sorted({i.persona for i in inputs if i.persona})
    replayed: int | None = None
    if settings.replay_args is not None and recordings is not None:
        replayed = len(recordings)
        path = settings.replay_args.override_param_path
        inputs = [
            item.model_copy(
                update={
                    "index": item.index * len(recordings) + number,
                    "call_args": set_path(recording.kwargs, path, item.input, recording.origin),
                }
            )
            for item in inputs
            for number, recording in enumerate(recordings)
        ]
    return ExperimentPlan(
        inputs=inputs,
        iterations=settings.iterations,
        personas=personas,
        total_runs=len(inputs) * settings.iterations,
        recordings=replayed,
    )


@dataclass(frozen=True, slots=True)
class Slot:
    """One planned run: its number in plan order and what it runs."""

    number: int
    trace_id: str
    input: PlanInput
    iteration: int


def trace_id_for(experiment_id: str, slot: int, total: int) -> str:
    """Stable, sortable trace id of a slot (zero-padded so ids sort in plan order)."""
    width = max(6, len(str(max(total - 1, 0))))
    return f"{experiment_id}-{slot:0{width}d}"


def iter_slots(experiment_id: str, plan: ExperimentPlan) -> Iterator[Slot]:
    """Every slot of ``plan`` (or its ``only_slots``), in plan order, without
    materialising them."""
    full = len(plan.inputs) * plan.iterations
    wanted = set(plan.only_slots) if plan.only_slots is not None else None
    number = 0
    for item in plan.inputs:
        for iteration in range(plan.iterations):
            if wanted is None or number in wanted:
                yield Slot(number, trace_id_for(experiment_id, number, full), item, iteration)
            number += 1


def slot_key(slot: Slot) -> tuple[str, str | None, int, str]:
    """What a slot runs: (input, persona, iteration, replayed arguments as JSON)."""
    args = orjson.dumps(slot.input.call_args, option=orjson.OPT_SORT_KEYS).decode()
    return (slot.input.input, slot.input.persona, slot.iteration, args)


def resupply_masked(plan: ExperimentPlan, inputs_file: str) -> ExperimentPlan:
    """The recorded ``plan`` with the secrets the log masked in its inputs' metadata
    (``***`` under secret-looking keys) read again from the inputs file, so that an agent
    sees the same values when it runs from the log (resume, workers, replay) as when it
    ran from the file. An input whose secret the file no longer holds is refused by name.
    """
    masked = [item for item in plan.inputs if _has_mask(item.metadata)]
    if not masked:
        return plan
    try:
        current = load_inputs(Path(inputs_file))
    except InputsError as exc:
        raise InputsError(
            f"input #{masked[0].index} has secrets the log masked, re-read from the inputs "
            f"file, which cannot be read ({exc}); restore {inputs_file}"
        ) from None
    by_text: dict[tuple[str, str | None], PlanInput] = {}
    for item in current:
        by_text.setdefault((item.input, item.persona), item)
    restored = []
    for item in plan.inputs:
        if not _has_mask(item.metadata):
            restored.append(item)
            continue
        source = by_text.get((item.input, item.persona))
        metadata = _unmask(item.metadata, source.metadata if source else None)
        if metadata is None:
            raise InputsError(
                f"input #{item.index} ({item.input[:40]!r}) had secrets masked in the log and "
                f"{inputs_file} no longer holds them; restore the inputs file to run it"
            )
        restored.append(item.model_copy(update={"metadata": metadata}))
    return plan.model_copy(update={"inputs": restored})


def _has_mask(value: Any) -> bool:
    if value == MASK:
        return True
    if isinstance(value, dict):
        return any(_has_mask(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_mask(v) for v in value)
    return False


def _unmask(recorded: Any, current: Any) -> Any:
    """``recorded`` with each ``***`` replaced by the value at the same place in
    ``current``; None when ``current`` lacks one."""
    if recorded == MASK:
        return current if current not in (None, MASK) else None
    if isinstance(recorded, dict):
        if not isinstance(current, dict):
            return None if _has_mask(recorded) else recorded
        out = {}
        for key, value in recorded.items():
            fixed = _unmask(value, current.get(key))
            if fixed is None and value is not None:
                return None
            out[key] = fixed
        return out
    if isinstance(recorded, list):
        if not isinstance(current, list) or len(current) != len(recorded):
            return None if _has_mask(recorded) else recorded
        items = [_unmask(r, c) for r, c in zip(recorded, current, strict=True)]
        return (
            None
            if any(i is None and r is not None for i, r in zip(items, recorded, strict=True))
            else items
        )
    return recorded
