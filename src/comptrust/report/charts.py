"""Charts as inline SVG strings (matplotlib, Agg, no pyplot state), from ComparisonResults.

Text stays <text> (svg.fonttype "none") so the charts are small and searchable; matplotlib
XML-escapes it, so a model name containing `<script>` is drawn as text (tests check this).
`$` would start matplotlib mathtext, so labels escape it. Each chart gets its own hash salt:
the element ids inside the SVGs stay unique when several are inlined into one HTML page, and
the output is deterministic.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from ..perspectives.registry import dimension_title, heatmap_order, report_order  # noqa: E402
from ..results_schema import ComparisonResults  # noqa: E402
from .compare import delta_mark  # noqa: E402

# Column orders (the heatmap's is the paper's Fig. 2) come from the dimension catalogue.


def _lbl(s: str) -> str:
    return s.replace("\\", "\\\\").replace("$", r"\$")


def _title(d: str) -> str:
    return dimension_title(d)


def _svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"comptrust-{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    s = buf.getvalue()
    s = s[s.index("<svg"):]  # drop the XML declaration and DOCTYPE (it names a remote DTD)
    # matplotlib numbers its group ids per figure (figure_1, axes_1, ...): prefix every id and
    # reference so the SVGs inlined into one page never share (or cross-reference) an id.
    s = re.sub(r'\bid="([^"]+)"', rf'id="{salt}-\1"', s)
    s = re.sub(r"url\(#([^)]+)\)", rf"url(#{salt}-\1)", s)
    return re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{salt}-\1"', s)


def radar(cmp: ComparisonResults, run_id: str, index: int = 0) -> str | None:
    row = next(r for r in cmp.rows if r.run_id == run_id)
    base = next((r for r in cmp.rows if r.run_id == row.baseline_run_id), None)
    if base is None:
        return None
    dims = [d for d in report_order() if d in row.cells
            and row.cells[d].score is not None and row.cells[d].baseline_score is not None]
    if len(dims) < 3:
        return None
    ang = [2 * math.pi * i / len(dims) for i in range(len(dims))]
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.add_subplot(projection="polar")
    for lab, vals, color in ((base.label, [row.cells[d].baseline_score for d in dims], "#777777"),
                             (row.label, [row.cells[d].score for d in dims], "#1f77b4")):
        ax.plot(ang + ang[:1], vals + vals[:1], color=color, lw=1.6, label=_lbl(lab))
        ax.fill(ang + ang[:1], vals + vals[:1], color=color, alpha=0.12)
    ax.set_xticks(ang)
    ax.set_xticklabels([_title(d) for d in dims], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_yticks([25, 50, 75, 100])
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, ncol=1, frameon=False)
    return _svg(fig, f"radar-{index}")


def delta_heatmap(cmp: ComparisonResults) -> str | None:
    rows = [r for r in cmp.rows if r.role == "variant"]
    cols = [d for d in heatmap_order() if d in cmp.dimensions]
    if not rows or not cols:
        return None
    import numpy as np

    z = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        for j, d in enumerate(cols):
            c = r.cells.get(d)
            if c is not None and c.delta is not None:
                z[i, j] = c.delta
    if np.isnan(z).all():
        return None
    vmax = max(5.0, float(np.nanmax(np.abs(z))))
    fig = Figure(figsize=(1.0 + 0.85 * len(cols), 0.8 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    ax.imshow(np.ma.masked_invalid(z), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    for i, r in enumerate(rows):
        for j, d in enumerate(cols):
            if not np.isnan(z[i, j]):
                mark = delta_mark(r.cells[d])
                ax.text(j, i, f"{mark}{z[i, j]:+.1f}".replace("-", "−"), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), [_title(d) for d in cols], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [_lbl(r.label) for r in rows], fontsize=8)
    ax.set_title("Δ score vs dense (≈ within noise, ? too few samples, ⊘ refusal-driven)", fontsize=9)
    return _svg(fig, "heatmap")


def trust_vs_bits(cmp: ComparisonResults) -> str | None:
    ref = {r.run_id: r for r in cmp.runs}
    pts = [(ref[r.run_id].bits_per_weight, r.overall_score, r) for r in cmp.rows if r.role != "noise_floor"]
    have = [(x, y, r) for x, y, r in pts if x is not None and y is not None]
    lines = [(y, r) for x, y, r in pts if x is None and y is not None and r.role == "baseline"]
    if not have:
        return None
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    for x, y, r in have:
        ax.scatter([x], [y], color="#444444" if r.role == "baseline" else "#1f77b4", zorder=3)
        ax.annotate(_lbl(r.label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for y, r in lines:
        ax.axhline(y, color="#777777", ls="--", lw=1)
        ax.annotate(_lbl(r.label), (min(x for x, _, _ in have), y), textcoords="offset points", xytext=(0, 4), fontsize=7)
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("overall trust (mean of dimensions)")
    ax.grid(alpha=0.3)
    return _svg(fig, "scatter")


def seed_spread_chart(cmp: ComparisonResults) -> str | None:
    fams = [f for f in cmp.seed_families if f.dimensions]
    if not fams:
        return None
    fig = Figure(figsize=(7.0, 2.4 * len(fams)))
    for k, f in enumerate(fams):
        ax = fig.add_subplot(len(fams), 1, k + 1)
        dims = [d for d in cmp.dimensions if d in f.dimensions]
        for j, d in enumerate(dims):
            s = f.dimensions[d]
            ax.vlines(j, s.min, s.max, color="#d62728" if s.exceeds else "#1f77b4", lw=3, alpha=0.6)
            ax.annotate(f"{s.range:.1f}", (j, s.max), textcoords="offset points", xytext=(0, 4), ha="center",
                        fontsize=7, color="#d62728" if s.exceeds else "#555555")
            ys = [f.scores[rid].get(d) for rid in f.run_ids]
            ax.scatter([j] * len([y for y in ys if y is not None]), [y for y in ys if y is not None],
                       color="#222222", s=10, zorder=3)
        ax.set_xticks(range(len(dims)), [_title(d) for d in dims], fontsize=8)
        ax.set_ylabel("score", fontsize=8)
        ax.margins(y=0.15)
        ax.set_title(_lbl(f"{f.label}: seeds {', '.join(str(s) for s in f.seeds)} (numbers: range; red: > {f.threshold:g})"), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _svg(fig, "seeds")


def refusal_chart(cmp: ComparisonResults) -> str | None:
    rows = [r for r in cmp.rows if r.role != "noise_floor"]
    dims = [d for d in cmp.dimensions if any(r.cells.get(d) and r.cells[d].refusal_rate is not None for r in rows)]
    if not dims or not rows:
        return None
    fig = Figure(figsize=(max(5.5, 0.9 * len(dims) + 1.5), 3.4))
    ax = fig.add_subplot()
    w = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j - 0.4 + w * (i + 0.5) for j in range(len(dims))]
        ys = [(r.cells[d].refusal_rate or 0.0) * 100 if r.cells.get(d) else 0.0 for d in dims]
        ax.bar(xs, ys, width=w, label=_lbl(r.label))
    ax.set_xticks(range(len(dims)), [_title(d) for d in dims], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("refusal rate (%)")
    ax.legend(fontsize=7, ncol=2, frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return _svg(fig, "refusal")


def all_charts(cmp: ComparisonResults) -> dict:
    """name -> SVG (None where the data does not allow the chart); radars: [(label, svg)]."""
    radars = []
    for i, r in enumerate(x for x in cmp.rows if x.role == "variant"):
        svg = radar(cmp, r.run_id, i)
        if svg:
            radars.append((r.label, svg))
    return {
        "radars": radars,
        "heatmap": delta_heatmap(cmp),
        "scatter": trust_vs_bits(cmp),
        "seeds": seed_spread_chart(cmp),
        "refusal": refusal_chart(cmp),
    }
