"""FluxLoop's ``parse experiment``: per-trace Markdown and per_trace.jsonl from the files of
an output folder (not the log: it works on folders copied off another machine too)."""

from __future__ import annotations

from collections import defaultdict
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
    return "```json\n" + orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n```"


def trace_markdown(summary: dict[str, Any], observations: list[dict[str, Any]]) -> str:
    """The readable page of one trace: front matter, summary, conversation, timeline."""
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
        for entry in summary["conversation"]:
            role = str(entry.get("role") or "unknown").capitalize()
            source = f" _(source={entry['source']})_" if entry.get("source") else ""
            lines.append(f"- **{role}**: {entry.get('content')}{source}")
        lines.append("")
    lines.append("## Timeline")
    lines.append("")
    for step, obs in enumerate(observations, start=1):
        lines += [
            "---",
            f"### Step {step}: [{obs.get('type')}] {obs.get('name') or 'unknown'}",
            f"- Time: `{obs.get('timestamp') or 'N/A'}`",
            f"- Level: `{obs.get('level') or 'N/A'}`",
            "",
            _block(obs.get("data") or {}),
            "",
        ]
    if not observations:
        lines.append("(no observations recorded)")
    return "\n".join(lines).rstrip() + "\n"


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
            record = {
                "trace_id": trace_id,
                "iteration": summary.get("iteration"),
                "persona": summary.get("persona"),
                "input": summary.get("input"),
                "output": summary.get("output"),
                "duration_ms": summary.get("duration_ms"),
                "success": summary.get("success"),
                "summary": summary,
                "timeline": observations,
                "conversation": summary.get("conversation") or [],
                "metrics": {"observation_count": len(observations)},
            }
            records.write(orjson.dumps(record) + b"\n")
    return len(summaries)
