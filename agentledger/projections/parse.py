"""FluxLoop's ``parse experiment``: per-trace Markdown and per_trace.jsonl from the files of
an output folder (not the log: it works on folders copied off another machine too)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from agentledger.projections.errors import ProjectionError


class ParseError(ProjectionError):
    """An output folder's files cannot be parsed."""


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` file, or of the ``.json`` array written by ``format: json``."""
    json_path = path.with_suffix(".json")
    if not path.is_file() and json_path.is_file():
        try:
            rows = orjson.loads(json_path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"{json_path} is not valid JSON: {exc}") from None
        return list(rows)
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise ParseError(f"{path} line {number} is not valid JSON") from None
    return rows


def _block(value: Any) -> str:
    if value is None:
        return "(no data)"
    return "```json\n" + orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n```"


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def timeline_step(obs: dict[str, Any]) -> dict[str, Any]:
    """One observation as a timeline step, FluxLoop's fields: an SDK observation has its
    start, end, input and output; one of ``ctx.span``/``ctx.observe`` its time and data
    (a span's end carries its duration)."""
    start = obs.get("start_time") or obs.get("timestamp")
    end = obs.get("end_time")
    begun, ended = _parse_time(start), _parse_time(end)
    duration: Any = None
    if begun is not None and ended is not None:
        try:
            duration = (ended - begun).total_seconds() * 1000
        except TypeError:  # one time with a zone, one without
            duration = None
    elif isinstance(obs.get("data"), dict):
        duration = obs["data"].get("duration_ms")
    own = "observation_id" in obs and "input" not in obs
    return {
        "trace_id": obs.get("trace_id"),
        "type": obs.get("type"),
        "name": obs.get("name"),
        "start_time": start,
        "end_time": end,
        "level": obs.get("level"),
        "duration_ms": duration,
        "input": obs.get("data") if own else obs.get("input"),
        "output": obs.get("output"),
        "raw": obs,
    }


def _sorted_steps(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps = [timeline_step(obs) for obs in observations]
    return sorted(steps, key=lambda s: (str(s["start_time"] or ""), str(s["end_time"] or "")))


def _conversation_line(entry: dict[str, Any]) -> str:
    role = str(entry.get("role") or "unknown").capitalize()
    metadata = entry.get("metadata") or {}
    bits = []
    if entry.get("source"):
        bits.append(f"source={entry['source']}")
    if metadata.get("actions"):
        bits.append("actions=" + ", ".join(str(a) for a in metadata["actions"]))
    if metadata.get("closing"):
        bits.append("closing=true")
    if metadata.get("persona"):
        bits.append(f"persona={metadata['persona']}")
    suffix = f" _({' ; '.join(bits)})_" if bits else ""
    return f"- **{role}**: {entry.get('content') or ''}{suffix}"


def trace_markdown(summary: dict[str, Any], observations: list[dict[str, Any]]) -> str:
    """The readable page of one trace, as FluxLoop's parse writes it: front matter,
    summary, conversation, and a timeline step per observation in start order."""
    lines = [
        "---",
        f'trace_id: "{summary["trace_id"]}"',
        f"iteration: {summary.get('iteration', 0)}",
        f"persona: {orjson.dumps(summary.get('persona')).decode()}",
        f"duration_ms: {float(summary.get('duration_ms') or 0):.2f}",
        f"success: {'true' if summary.get('success') else 'false'}",
        "---",
        "",
        "# Trace Analysis",
        "",
        "## Summary",
        f"- Trace ID: `{summary['trace_id']}`",
        f"- Iteration: `{summary.get('iteration', 0)}`",
        f"- Persona: `{summary.get('persona') or 'N/A'}`",
        f"- Duration: `{float(summary.get('duration_ms') or 0):.2f} ms`",
        f"- Success: `{bool(summary.get('success'))}`",
        "",
        "### Input",
        _block({"input": summary.get("input")}),
        "",
        "### Output",
        _block({"output": summary.get("output")}),
        "",
    ]
    if summary.get("error"):
        lines += ["### Error", _block(summary["error"]), ""]
    if summary.get("conversation"):
        lines.append("## Conversation")
        lines.append("")
        lines += [_conversation_line(e) for e in summary["conversation"] if isinstance(e, dict)]
        lines.append("")
    lines.append("## Timeline")
    lines.append("")
    steps = _sorted_steps(observations)
    for number, step in enumerate(steps, start=1):
        duration = step["duration_ms"]
        shown = f"{duration:.2f} ms" if isinstance(duration, (int, float)) else "N/A"
        lines += [
            "---",
            f"### Step {number}: [{step['type']}] {step['name'] or 'unknown'}",
            f"- Start: `{step['start_time'] or 'N/A'}`",
            f"- End: `{step['end_time'] or 'N/A'}`",
            f"- Duration: `{shown}`",
            f"- Level: `{step['level'] or 'N/A'}`",
            "",
            "**Input**",
            _block(step["input"]),
            "",
            "**Output**",
            _block(step["output"]),
            "",
        ]
    if not steps:
        lines.append("(no observations recorded)")
    return "\n".join(lines).rstrip() + "\n"


def _decoded(value: Any) -> Any:
    """A message that is a JSON document in a string, decoded (as FluxLoop's parse does)."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] in "{[" and text[-1] in "}]":
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                return value
    return value


def per_trace_record(summary: dict[str, Any], observations: list[dict[str, Any]]) -> dict[str, Any]:
    """One line of per_trace.jsonl, with FluxLoop's fields."""
    conversation = [
        {**entry, "content": _decoded(entry.get("content"))} if isinstance(entry, dict) else entry
        for entry in summary.get("conversation") or []
    ]
    timeline = _sorted_steps(observations)
    record: dict[str, Any] = {
        "trace_id": summary.get("trace_id"),
        "iteration": summary.get("iteration"),
        "persona": summary.get("persona"),
        "input": summary.get("input"),
        "output": summary.get("output"),
        "final_output": summary.get("output"),
        "duration_ms": summary.get("duration_ms"),
        "success": summary.get("success"),
        "summary": {
            "trace_id": summary.get("trace_id"),
            "iteration": summary.get("iteration"),
            "persona": summary.get("persona"),
            "input": summary.get("input"),
            "output": summary.get("output"),
            "duration_ms": summary.get("duration_ms"),
            "success": summary.get("success"),
            "raw": summary,
            "conversation": summary.get("conversation"),
            "conversation_state": summary.get("conversation_state"),
            "termination_reason": summary.get("termination_reason"),
        },
        "timeline": timeline,
        "conversation": conversation,
        "metrics": {"observation_count": len(timeline)},
    }
    if summary.get("conversation_state"):
        record["conversation_state"] = summary["conversation_state"]
    if summary.get("termination_reason"):
        record["termination_reason"] = summary["termination_reason"]
    return record


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def parse_folder(folder: Path, target: Path) -> int:
    """Write ``<iteration>_<trace>.md`` per trace and ``per_trace.jsonl`` into ``target``."""
    summaries = _read_rows(folder / "trace_summary.jsonl")
    if not summaries:
        raise ParseError(
            f"{folder} has no trace_summary.jsonl rows; is it an experiment output folder?"
        )
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obs in _read_rows(folder / "observations.jsonl"):
        grouped[str(obs.get("trace_id"))].append(obs)
    target.mkdir(parents=True)
    with open(target / "per_trace.jsonl", "wb") as records:
        for summary in summaries:
            trace_id = str(summary.get("trace_id"))
            observations = grouped.get(trace_id, [])
            name = f"{int(summary.get('iteration') or 0):02d}_{_slug(trace_id)}.md"
            (target / name).write_text(trace_markdown(summary, observations), encoding="utf-8")
            records.write(orjson.dumps(per_trace_record(summary, observations)) + b"\n")
    return len(summaries)
