"""Charts as inline SVG, drawn on the server: no script and no network to show them.

Every text that goes into a chart is escaped; coordinates are rounded so that the same
figures always give the same bytes (the HTML report is rebuilt byte for byte).
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from agentledger.projections.rows import _percentile
from agentledger.view.traces import Bar

WIDTH = 640


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def ms_label(ms: float) -> str:
    if ms >= 60_000:
        return f"{ms / 60_000:.1f} min"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def histogram_bins(values_ms: Sequence[float], bins: int = 20) -> list[tuple[float, float, int]]:
    """(low, high, count) of ``bins`` equal-width bins from 0 to the largest value."""
    if not values_ms:
        return []
    top = max(values_ms)
    width = top / bins if top > 0 else 1.0
    counts = [0] * bins
    for value in values_ms:
        counts[min(int(value / width), bins - 1)] += 1
    return [(i * width, (i + 1) * width, n) for i, n in enumerate(counts)]


def duration_histogram(values_ms: Sequence[float], marks: dict[str, float]) -> Markup:
    """A histogram of durations with vertical lines at the named percentiles."""
    height, left, bottom = 160, 40, 24
    plot_w, plot_h = WIDTH - left - 8, height - bottom - 8
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>Duration histogram</title>'
    ]
    bins = histogram_bins(values_ms)
    if not bins:
        parts.append(f'<text x="{left}" y="{height // 2}">no finished runs yet</text></svg>')
        return Markup("".join(parts))
    peak = max(n for _, _, n in bins) or 1
    top = bins[-1][1]
    bar_w = plot_w / len(bins)
    for i, (low, high, count) in enumerate(bins):
        h = plot_h * count / peak
        x, y = left + i * bar_w, 8 + plot_h - h
        tip = escape(f"{ms_label(low)} - {ms_label(high)}: {count} run(s)")
        parts.append(
            f'<rect class="bar" x="{_num(x + 1)}" y="{_num(y)}" width="{_num(bar_w - 2)}" '
            f'height="{_num(h)}"><title>{tip}</title></rect>'
        )
    axis_y = 8 + plot_h
    parts.append(f'<line class="axis" x1="{left}" y1="{axis_y}" x2="{WIDTH - 8}" y2="{axis_y}"/>')
    parts.append(f'<text class="tick" x="{left}" y="{height - 6}">0</text>')
    parts.append(
        f'<text class="tick" x="{WIDTH - 8}" y="{height - 6}" text-anchor="end">'
        f"{escape(ms_label(top))}</text>"
    )
    parts.append(f'<text class="tick" x="{left - 4}" y="16" text-anchor="end">{peak}</text>')
    at: dict[str, list[str]] = {}
    for name, value in marks.items():
        at.setdefault(_num(left + plot_w * (value / top if top else 0)), []).append(name)
    for row, (where, names) in enumerate(at.items()):
        anchor = "end" if float(where) > WIDTH - 60 else "start"
        shift = -2 if anchor == "end" else 2
        parts.append(
            f'<line class="mark" x1="{where}" y1="8" x2="{where}" y2="{axis_y}"/>'
            f'<text class="mark-label" x="{_num(float(where) + shift)}" y="{18 + 12 * (row % 3)}" '
            f'text-anchor="{anchor}">{escape("/".join(names))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def success_bars(groups: dict[str, dict[str, float]]) -> Markup:
    """One horizontal bar per persona: successful and failed runs, with the rate."""
    row_h, left = 22, 150
    height = max(1, len(groups)) * row_h + 8
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>Success by persona</title>'
    ]
    peak = max((g["total"] for g in groups.values()), default=0) or 1
    plot_w = WIDTH - left - 70
    for i, (name, group) in enumerate(groups.items()):
        y = 4 + i * row_h
        ok_w = plot_w * group["successful"] / peak
        bad_w = plot_w * group["failed"] / peak
        label = name if len(name) <= 22 else name[:21] + "…"
        parts.append(
            f'<text class="label" x="{left - 6}" y="{y + 14}" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(label)}</text>"
            f'<rect class="ok" x="{left}" y="{y + 2}" width="{_num(ok_w)}" height="{row_h - 6}">'
            f"<title>{int(group['successful'])} successful</title></rect>"
            f'<rect class="failed" x="{_num(left + ok_w)}" y="{y + 2}" width="{_num(bad_w)}" '
            f'height="{row_h - 6}"><title>{int(group["failed"])} failed</title></rect>'
            f'<text class="value" x="{_num(left + ok_w + bad_w + 6)}" y="{y + 14}">'
            f"{group['success_rate'] * 100:.1f}%</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def waterfall(bars: Sequence[Bar], total_ms: float) -> Markup:
    """The trace's timeline: one row per bar, offset and length in proportion to time."""
    row_h, left = 20, 230
    height = len(bars) * row_h + 28
    plot_w = WIDTH * 1.5 - left - 10
    scale = plot_w / total_ms if total_ms > 0 else 0.0
    width = int(WIDTH * 1.5)
    parts = [
        f'<svg class="chart waterfall" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>Timeline</title>'
    ]
    # The grid first: drawn over the bars, its lines would take their clicks.
    axis_y = len(bars) * row_h + 8
    for i in range(5):
        value = total_ms * i / 4
        x = left + plot_w * i / 4
        anchor = "end" if i == 4 else "start"
        parts.append(
            f'<line class="grid" x1="{_num(x)}" y1="0" x2="{_num(x)}" y2="{axis_y}"/>'
            f'<text class="tick" x="{_num(x)}" y="{axis_y + 14}" text-anchor="{anchor}">'
            f"{escape(ms_label(value))}</text>"
        )
    for i, bar in enumerate(bars):
        y = 4 + i * row_h
        x = left + bar.start_ms * scale
        label = bar.label if len(bar.label) <= 34 else bar.label[:33] + "…"
        indent = 4 + bar.depth * 10
        text = (
            f'<text class="label" x="{indent}" y="{y + 13}"><title>{escape(bar.label)}</title>'
            f"{escape(label)}</text>"
        )
        if bar.end_ms is None:
            tip = escape(f"{bar.label} at {ms_label(bar.start_ms)}")
            shape = (
                f'<circle class="point {escape(bar.kind)}" cx="{_num(x)}" cy="{y + 9}" r="4">'
                f"<title>{tip}</title></circle>"
            )
        else:
            w = max(4.0, (bar.end_ms - bar.start_ms) * scale)
            tip = escape(
                f"{bar.label}: {ms_label(bar.end_ms - bar.start_ms)} "
                f"(from {ms_label(bar.start_ms)}) {bar.status}"
            )
            shape = (
                f'<rect class="span {escape(bar.kind)} {escape(bar.status)}" x="{_num(x)}" '
                f'y="{y + 3}" width="{_num(w)}" height="{row_h - 6}"><title>{tip}</title></rect>'
            )
        if bar.anchor:
            shape = f'<a href="#{escape(bar.anchor)}">{shape}</a>'
        parts.append(text + shape)
    parts.append("</svg>")
    return Markup("".join(parts))


def percentile_ms(ordered_us: list[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted microsecond values, in milliseconds: the report's
    own definition (summary.json's p50 and p95)."""
    return _percentile(ordered_us, fraction)
