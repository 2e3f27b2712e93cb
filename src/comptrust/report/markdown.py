"""report.md: the summary table, recommendation, seed spread, top regressions and provenance.

Every piece of text that comes from a run (model names, prompts, answers, notes, file names)
goes through `md_cell`, which neutralises the characters that would change the Markdown
structure (`|`, backticks, newlines, `*` and `_` emphasis) or become HTML in a renderer (`<`, `>`, `&`).
"""

from __future__ import annotations

from ..perspectives.registry import trust_dimensions
from ..results_schema import ComparisonResults, DeltaCell, ReportRow
from ..sanitize import clean_document
from ..protocol import describe as protocol_line
from .compare import MARK_LEGEND, delta_mark, dim_title, evidence_state, fmt, fmt_delta, fmt_refusal

SNIPPET = 300  # characters of prompt / answer in the Markdown tables (the HTML has more)


def md_cell(s: object, limit: int | None = None) -> str:
    t = "" if s is None else str(s)
    if limit is not None and len(t) > limit:
        t = t[:limit] + "…"
    t = t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    t = t.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("*", "\\*").replace("_", "\\_")
    t = t.replace("\r\n", "\n").replace("\r", "\n").replace("\n", " ⏎ ")
    return t


def size_text(b: int | None) -> str:
    return "–" if b is None else f"{b / 2**20:.1f} MiB"


def noise_mark(c: DeltaCell) -> str:
    return delta_mark(c)


def cell_text(row: ReportRow, c: DeltaCell | None) -> str:
    if c is None or c.score is None:
        return "–"
    ref = f" {fmt_refusal(c.refusal_rate)}"
    if row.role == "baseline" or c.delta is None:
        return fmt(c.score) + (" ⊘" if c.refusal_driven else "") + ref
    return f"{fmt(c.score)} ({fmt_delta(c.delta)}{noise_mark(c)}){ref}"


def overall_text(row: ReportRow) -> str:
    if row.overall_score is None:
        return "–"
    base = fmt(row.overall_score) + ("" if row.overall_complete else f" ({len(row.overall.dimensions_used)}/{len(trust_dimensions())})")
    d = row.overall_delta
    if row.role == "baseline" or d is None or d.delta is None:
        return base
    return f"{base} ({fmt_delta(d.delta)}{noise_mark(d)})"


def summary_table(cmp: ComparisonResults) -> list[str]:
    ref = {r.run_id: r for r in cmp.runs}
    head = ["Model"] + [dim_title(d) for d in cmp.dimensions] + ["Overall", "Size", "tok/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in cmp.rows:
        r = ref[row.run_id]
        label = row.label + (" (noise floor)" if row.role == "noise_floor" else "")
        cells = [md_cell(label)] + [cell_text(row, row.cells.get(d)) for d in cmp.dimensions]
        cells += [overall_text(row), size_text(r.size_bytes), fmt(r.tokens_per_s)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_STATE_WORDS = {"outside": "outside noise", "within": "within noise", "too_few": "too few samples to tell",
                "no_ci": "no CI", "refusal": "refusal-driven"}


def evidence_records(cmp: ComparisonResults) -> list[dict]:
    """The evidence of every compared cell, formatted but not yet escaped (Markdown and HTML render it)."""
    out = []
    for row in cmp.rows:
        if row.role == "baseline":
            continue
        for d in cmp.dimensions:
            c = row.cells.get(d)
            if c is None or c.delta is None:
                continue
            ci = (f"[{fmt_delta(c.ci_low, 2)}, {fmt_delta(c.ci_high, 2)}]" if c.ci_low is not None and c.ci_high is not None
                  else "–")
            out.append({"label": row.label, "dim": dim_title(d), "delta": fmt_delta(c.delta, 2), "ci": ci,
                        "n": c.n_paired, "strata": c.n_strata or "–",
                        "refusal": f"{fmt_refusal(c.refusal_rate)} / {fmt_refusal(c.baseline_refusal_rate)}",
                        "noise_floor": fmt_delta(c.noise_floor_delta, 2), "state_key": evidence_state(c)})
    return out


def evidence_table(cmp: ComparisonResults) -> list[str]:
    """One line per compared cell: the delta, its CI and the counts it rests on."""
    lvl = f"{cmp.stats.ci_level:.0%}"
    lines = [f"| Model | Dimension | Δ | {lvl} CI | paired requests | strata | refusal (run / baseline) | noise floor Δ | evidence |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in evidence_records(cmp):
        lines.append(f"| {md_cell(e['label'])} | {e['dim']} | {e['delta']} | {e['ci']} | {e['n']} | {e['strata']} | "
                     f"{e['refusal']} | {e['noise_floor']} | {_STATE_WORDS[e['state_key']]} |")
    return lines if len(lines) > 2 else []


def render_markdown(cmp: ComparisonResults) -> str:
    st = cmp.stats
    out = [
        "# comptrust report" if cmp.kind == "report" else "# comptrust comparison",
        "",
        f"Generated {cmp.created_at} by comptrust {cmp.comptrust_version}. Deltas are vs the dense baseline "
        f"(first row of each block), on the paired requests; {st.ci_level:.0%} CIs: {st.method}; "
        f"{st.n_boot} replicates, seed {st.seed}. No CI below {st.min_paired} paired requests.",
        "",
        "## Summary",
        "",
        *summary_table(cmp),
        "",
        "Cells: score (Δ vs baseline) and the refusal/unparseable rate. " + MARK_LEGEND + ". "
        f"Overall = mean of the {len(trust_dimensions())} trust dimensions; (k/{len(trust_dimensions())}) when only k are present (see docs/report.md).",
        "",
    ]
    foot = [md_cell(n) for n in dict.fromkeys(r.group_size_note for r in cmp.runs if r.group_size_note)]
    if foot:
        out += ["\\* " + f for f in foot] + [""]

    out += ["## Recommendation", ""] + [md_cell(p) for p in cmp.recommendation.paragraphs] + [""]

    ev = evidence_table(cmp)
    if ev:
        out += ["## Deltas and their evidence", "", *ev, ""]

    if cmp.seed_families:
        out += ["## Seed spread", "", "| Variant | Dimension | min | max | std | range | > threshold |",
                "|---|---|---|---|---|---|---|"]
        for f in cmp.seed_families:
            for d, s in f.dimensions.items():
                out.append(f"| {md_cell(f.label)} | {dim_title(d)} | {fmt(s.min)} | {fmt(s.max)} | {fmt(s.std, 2)} | "
                           f"{fmt(s.range)} | {'**yes**' if s.exceeds else 'no'} |")
        out.append("")

    notes = []
    for row in cmp.rows:
        for d, c in row.cells.items():
            if c.note:
                notes.append(f"- {md_cell(row.label)} / {dim_title(d)}: {md_cell(c.note)}")
    if notes or cmp.notes:
        out += ["## Notes", ""] + [f"- {md_cell(n)}" for n in cmp.notes] + notes + [""]

    if cmp.regressions:
        out += ["## Top regressions", "",
                "Requests whose per-request utility dropped most (variant − baseline).", ""]
        for d, diffs in cmp.regressions.items():
            out += [f"### {dim_title(d)}", "", "| Variant | Request | Δ | Prompt | Dense answer | Variant answer |",
                    "|---|---|---|---|---|---|"]
            for x in diffs:
                out.append(
                    f"| {md_cell(x.label)} | {md_cell(x.request_id)} | {fmt_delta(x.utility_delta, 2)} | "
                    f"{md_cell(x.prompt, SNIPPET)} | {md_cell(' ⟂ '.join(x.baseline_texts), SNIPPET)} | "
                    f"{md_cell(' ⟂ '.join(x.variant_texts), SNIPPET)} |")
            out.append("")

    out += ["## Provenance", ""]
    refs = {r.run_id: r for r in cmp.runs}
    for p in cmp.provenance:
        b, ref = p.backend, refs[p.run_id]
        c = ref.compression
        comp = "none (dense)" if c is None else ", ".join(
            f"{k} {v}" for k, v in [("method", c.method), ("bits", c.bits), ("sparsity", c.sparsity),
                                    ("structure", c.structure), ("group size requested", c.group_size_requested),
                                    ("group size effective", c.group_size_effective), ("calibration", c.calib_source),
                                    ("n_calib", c.n_calib), ("seq_len", c.seq_len), ("seed", c.seed)] if v is not None)
        out += [f"### {md_cell(p.label)}", "",
                f"- run: {md_cell(p.run_id)} in {md_cell(p.run_dir)}",
                f"- model: {md_cell(ref.display_name)}, fingerprint {md_cell(ref.fingerprint)}; chat template "
                f"{md_cell(ref.chat_template or '?')}" + ("; system prompt merged into the first user turn" if ref.system_role_merged else ""),
                f"- protocol: {md_cell(protocol_line(ref.protocol))}",
                f"- compression: {md_cell(comp)}",
                f"- backend: {md_cell(b.name)} on {md_cell(b.device or '?')} ({md_cell(b.dtype or '?')})",
                f"- data: {md_cell(p.data.source or '?')}, {len(p.data.files)} files"
                + (f", bad rows skipped: {md_cell(p.data.bad_rows_skipped)}" if p.data.bad_rows_skipped else "")]
        for f, h in p.data.files.items():
            out.append(f"  - {md_cell(f)} sha256 {md_cell(h)}")
        for n in ref.model_notes:
            out.append(f"- model note: {md_cell(n)}")
        for k, v in p.scorers.items():
            out.append(f"- scorer {md_cell(k)}: {md_cell(v)}")
        for dev in p.deviations:
            out.append(f"- deviation: {md_cell(dev)}")
        for d, ns in p.dimension_notes.items():
            for n in ns:
                out.append(f"- {dim_title(d)}: {md_cell(n)}")
        out.append("")
    return clean_document("\n".join(out))  # a name holding ESC sequences stays inert text
