"""report.html: one self-contained page (inline CSS, inline SVG charts, no script, no external
request), rendered with jinja2 autoescape.

Only two kinds of values are marked safe: the SVG charts (generated here by matplotlib, which
escapes their text) and nothing else; every string from a run (model names, prompts, answers,
notes, file names) is escaped by the template engine. A Content-Security-Policy meta tag that
forbids scripts and remote loads backs this up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup

from ..perspectives.registry import trust_dimensions
from ..results_schema import ComparisonResults, DeltaCell, ReportRow
from ..sanitize import clean_document
from .charts import all_charts
from ..protocol import describe as protocol_line
from .compare import MARK_LEGEND, MARKS, dim_title, evidence_state, fmt, fmt_delta, fmt_refusal
from .markdown import size_text

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class HtmlCell:
    text: str
    sub: str = ""  # the delta line
    cls: str = ""  # up / down / flat / noise / toofew / noci / refusal
    ref: str = ""  # the refusal/unparseable rate line
    style: str = ""  # background computed from the delta (our own numbers only)
    title: str = ""  # tooltip: CI and notes


def _bg(delta: float, within: bool | None) -> str:
    if abs(delta) < 1e-12:
        return ""
    alpha = 0.12 if within else min(0.2 + abs(delta) / 20.0, 0.75)
    rgb = "46,160,67" if delta > 0 else "218,54,51"
    return f"background-color: rgba({rgb},{alpha:.2f})"


_CLASS = {"within": "noise", "too_few": "toofew", "no_ci": "noci", "refusal": "refusal"}


def _cell(row: ReportRow, c: DeltaCell | None, ci_level: float) -> HtmlCell:
    if c is None or c.score is None:
        return HtmlCell("–", cls="missing", title="not evaluated" if c is None or c.baseline_score is None else "missing in this run")
    ref = fmt_refusal(c.refusal_rate) if c.refusal_rate is not None or c.baseline_score is not None else ""
    if row.role == "baseline" or c.delta is None:
        return HtmlCell(fmt(c.score), ref=ref, cls="refusal" if c.refusal_driven else "", title=c.note or "")
    parts = [f"Δ {fmt_delta(c.delta, 2)} vs baseline {fmt(c.baseline_score)} on {c.n_paired} paired requests"]
    state = evidence_state(c)
    if c.ci_low is not None and c.ci_high is not None:
        parts.append(f"{ci_level:.0%} CI [{fmt_delta(c.ci_low, 2)}, {fmt_delta(c.ci_high, 2)}]")
        parts.append("within noise (CI contains 0)" if c.within_noise else "outside noise")
    elif state == "too_few" or (state == "refusal" and c.ci_status == "too_few"):
        parts.append("too few samples to tell (no CI)")
    parts.append(f"refusal/unparseable {fmt_refusal(c.refusal_rate)} (baseline {fmt_refusal(c.baseline_refusal_rate)})")
    if c.note:
        parts.append(c.note)
    if state == "outside":
        cls = "up" if c.delta > 0 else "down" if c.delta < 0 else "flat"
        style = _bg(c.delta, False)
    else:
        cls = _CLASS[state]
        style = _bg(c.delta, True) if state == "within" else ""
    return HtmlCell(fmt(c.score), sub=f"{MARKS[state]}{fmt_delta(c.delta)}", cls=cls, style=style, ref=ref,
                    title="; ".join(parts))


def table_rows(cmp: ComparisonResults) -> list[dict]:
    ref = {r.run_id: r for r in cmp.runs}
    out = []
    for row in cmp.rows:
        r = ref[row.run_id]
        cells = [_cell(row, row.cells.get(d), cmp.stats.ci_level) for d in cmp.dimensions]
        if row.overall_score is None:
            overall = HtmlCell("–", cls="missing")
        else:
            txt = fmt(row.overall_score) + ("" if row.overall_complete else f" ({len(row.overall.dimensions_used)}/{len(trust_dimensions())})")
            if row.overall_delta is not None and row.role != "baseline":
                overall = _cell(row, row.overall_delta, cmp.stats.ci_level)
                overall.text = txt
            else:
                overall = HtmlCell(txt)
        out.append({"row": row, "ref": r, "cells": cells, "overall": overall,
                    "size": size_text(r.size_bytes), "tps": fmt(r.tokens_per_s),
                    "bpw": fmt(r.bits_per_weight, 2)})
    return out


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever the file extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["fmt_delta"] = fmt_delta
    env.filters["dim_title"] = dim_title
    env.globals["n_trust"] = len(trust_dimensions())
    env.globals["protocol_line"] = protocol_line
    return env


def render_html(cmp: ComparisonResults, charts: dict | None = None) -> str:
    charts = charts if charts is not None else all_charts(cmp)
    svg = {k: (Markup(v) if isinstance(v, str) else None) for k, v in charts.items() if k != "radars"}
    radars = [(label, Markup(s)) for label, s in charts.get("radars", [])]
    # control characters (ESC sequences in a model or run dir name, in an answer) become visible
    # escapes: autoescape makes them inert HTML but they would reach a terminal that cats the file
    return clean_document(_env().get_template("report.html.j2").render(
        cmp=cmp, rows=table_rows(cmp), svg=svg, radars=radars, dim_title=dim_title, legend=MARK_LEGEND,
        evidence=evidence_rows(cmp),
    ))


def evidence_rows(cmp: ComparisonResults) -> list[dict]:
    """The per-cell evidence table (the Markdown report has the same): jinja2 autoescapes the text."""
    from .markdown import _STATE_WORDS, evidence_records

    out = [{**e, "cls": _CLASS.get(e["state_key"], ""), "state": _STATE_WORDS[e["state_key"]]}
           for e in evidence_records(cmp)]
    return out
