"""Build the comparison (ComparisonResults) from loaded runs: baselines, deltas with paired
bootstrap CIs, seed spread, worst-regressing samples, provenance, recommendation.

Everything here is computed from the run directories alone; rendering (Markdown, HTML, charts)
reads only the ComparisonResults this module returns.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ComptrustError
from ..results_schema import (
    BENIGN_DIMENSIONS,
    DIMENSION_TITLES,
    TRUST_DIMENSIONS,
    ComparisonResults,
    CompressionInfo,
    DeltaCell,
    ReportRow,
    RunProvenance,
    RunRef,
    SampleDiff,
    SampleRecord,
    SeedFamily,
    StatsSettings,
    compute_overall,
)
from ..stats import (
    CI_METHOD,
    MIN_PAIRED,
    MIN_STRATUM,
    BootstrapResult,
    mean_delta_ci,
    paired_bootstrap,
    seed_spread,
)
from ..types import SampleScore
from .load import LoadedRun
from .recommend import recommend

MAX_TEXT = 4000  # characters of prompt / answer kept per sample in the report
# Above this refusal / unparseable rate (on either side) a score measures refusals rather than
# the behaviour: the cell is "refusal-driven" and never cited as a gain or loss in trust.
REFUSAL_RULE = 0.5


class BaselineError(ComptrustError):
    """No (or more than one) dense baseline for a variant."""


@dataclass
class DimAggregator:
    """How to re-aggregate one dimension of one run on a subset of its samples."""

    score: Callable[[list[SampleScore]], float | None]
    fast_mean_key: str | None = None  # set when score == mean(values[key]) * 100
    utility: Callable[[SampleScore], float | None] | None = None  # per request, higher = better


Aggregator = Callable[[str, LoadedRun], "DimAggregator | None"]


def registry_aggregator(dimension: str, run: LoadedRun) -> DimAggregator | None:
    """The perspective's own aggregate, with the run's profile, seed and recorded options (the
    dimension's effective options where recorded, else the run's top-level options), and its
    `bootstrap_mean_key` / `sample_utility` hooks (see perspectives/base.py)."""
    from ..data.source import DataSource
    from ..perspectives.base import Perspective, PerspectiveContext, get_perspective
    from ..perspectives.registry import recorded_options
    from ..profiles import get_profile

    dim = run.results.dimensions.get(dimension)
    prov = getattr(dim, "provenance", None)
    # the effective options: the protocol preset's switches as the run applied them (the user's
    # overrides included), then the user's other options
    switches = getattr(getattr(run.results, "protocol", None), "switches", None) or {}
    recorded = {**switches, **(getattr(prov, "options", None) or run.results.options)}
    try:
        P = get_perspective(dimension, recorded_options(dimension, recorded))
        profile = get_profile(run.results.profile.name)
    except ComptrustError:
        return None
    ctx = PerspectiveContext(data=DataSource.bundled(), profile=profile, seed=run.results.profile.seed)

    def score(scores: list[SampleScore]) -> float | None:
        return P.aggregate(scores, ctx).score

    has_utility = type(P).sample_utility is not Perspective.sample_utility
    return DimAggregator(score=score, fast_mean_key=P.bootstrap_mean_key,
                         utility=P.sample_utility if has_utility else None)


@dataclass
class CompareOptions:
    n_boot: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    threshold: float = 5.0
    top_k: int = 5


# ----------------------------------------------------------------------------- labels


_METHOD_NAMES = {"gptq": "GPTQ", "awq": "AWQ", "sparsegpt": "SparseGPT", "wanda": "Wanda",
                 "magnitude": "Magnitude", "rtn": "RTN"}


def variant_label(c: CompressionInfo) -> str:
    parts = [_METHOD_NAMES.get(c.method.lower(), c.method)]
    if c.bits is not None:
        parts.append(f"W{c.bits}")
    g = c.group_size_effective if c.group_size_effective is not None else c.group_size_requested
    if g is not None:
        star = "*" if c.group_size_effective is not None and c.group_size_requested is not None \
            and c.group_size_effective != c.group_size_requested else ""
        parts.append(f"g{g}{star}")
    if c.structure and ":" in c.structure:
        parts.append(c.structure)
    elif c.sparsity is not None and c.sparsity > 0:
        parts.append(f"{c.sparsity * 100:.0f}%")
    return " ".join(parts)


def group_size_note(c: CompressionInfo | None) -> str | None:
    if c is None or c.group_size_effective is None or c.group_size_requested is None:
        return None
    if c.group_size_effective == c.group_size_requested:
        return None
    return (f"g{c.group_size_effective}*: group size {c.group_size_effective} used instead of the requested "
            f"{c.group_size_requested} (the group size must divide the layer width)")


def _family_key(run: LoadedRun, baseline_id: str | None) -> tuple | None:
    c = run.results.model.compression
    if c is None:
        return None
    sp = None if c.sparsity is None else round(c.sparsity, 2)  # measured sparsity varies by seed
    return (baseline_id, c.method.lower(), c.bits, sp, c.structure, c.group_size_requested,
            c.group_size_effective, c.calib_source, c.n_calib, c.seq_len)


# ----------------------------------------------------------------------------- baselines


def assign_baselines(runs: list[LoadedRun], baseline: LoadedRun | None = None) -> dict[str, LoadedRun | None]:
    """run_id -> its baseline (None for the baselines themselves)."""
    ids: dict[str, LoadedRun] = {}
    for r in runs:
        if r.run_id in ids:  # load_runs gives distinct keys; only reachable from direct API use
            raise BaselineError(f"{ids[r.run_id].dir} and {r.dir} share run_id {r.run_id!r}; pass each run once")
        ids[r.run_id] = r
    if baseline is not None:
        return {r.run_id: (None if r.run_id == baseline.run_id else baseline) for r in runs}
    dense: dict[str, list[LoadedRun]] = defaultdict(list)
    for r in runs:
        if r.results.model.kind == "dense":
            dense[r.results.model.fingerprint].append(r)
    for fp, rs in dense.items():
        if len(rs) > 1:
            raise BaselineError(
                f"ambiguous baseline: {len(rs)} dense runs of the same model ({', '.join(str(r.dir) for r in rs)}); "
                f"pass --baseline DIR to choose one (and --noise-floor DIR for a re-run)"
            )
    out: dict[str, LoadedRun | None] = {}
    missing: list[LoadedRun] = []
    for r in runs:
        m = r.results.model
        if m.kind == "dense":
            out[r.run_id] = None
            continue
        cands = dense.get(m.base_fingerprint or "", [])
        if not cands:
            missing.append(r)
        else:
            out[r.run_id] = cands[0]
    if missing:
        what = "no dense run among the inputs" if not dense else "no dense run with the base fingerprint"
        raise BaselineError(
            f"{what} for {', '.join(f'{r.dir} (base {r.results.model.base_fingerprint})' for r in missing)}; "
            f"add the dense model's run dir, or pass --baseline DIR"
        )
    return out


# ----------------------------------------------------------------------------- cells


def _dim_seed(seed: int, dim: str) -> int:
    # One stream per dimension (independent across dimensions, as mean_delta_ci assumes), the
    # same for every variant (common random numbers make variants comparable).
    return seed * 1_000_003 + zlib.crc32(dim.encode("utf-8"))


def _scores(records: list[SampleRecord]) -> list[SampleScore]:
    return [r.to_score() for r in records]


def _check_stored(agg: DimAggregator, records: list[SampleRecord], stored: float | None) -> str | None:
    got = agg.score(_scores(records))
    if got is None and stored is None:
        return None
    if got is None or stored is None or abs(got - stored) > 1e-6:
        return (f"re-aggregating samples/*.jsonl gives {got if got is None else round(got, 4)} but results.json "
                f"says {stored if stored is None else round(stored, 4)}; samples and results are out of sync")
    return None


@dataclass
class _CellWork:
    cell: DeltaCell
    boot: BootstrapResult | None = None
    diffs: list[SampleDiff] = field(default_factory=list)


def _truncate(s: str) -> str:
    if len(s) <= MAX_TEXT:
        return s
    return s[:MAX_TEXT] + f" … [{len(s) - MAX_TEXT} more characters]"


def _answers(r: SampleRecord) -> list[str]:
    if r.texts:
        return [_truncate(t) for t in r.texts]
    # log-likelihood (multiple-choice) requests have no text: show the parsed choice instead
    return [] if r.parsed is None else [_truncate(f"(parsed) {json.dumps(r.parsed, ensure_ascii=False, default=str)}")]


def _sample_diffs(run: LoadedRun, label: str, dim: str, base_recs: list[SampleRecord],
                  var_recs: list[SampleRecord], agg: DimAggregator) -> list[SampleDiff]:
    """Per-request utility change (variant - baseline), most negative first."""
    b_by = {r.request_id: r for r in base_recs}
    v_by = {r.request_id: r for r in var_recs}
    if agg.utility is not None:
        util, how = agg.utility, "the perspective's per-request utility"
    else:
        util, how = (lambda s: agg.score([s])), "the dimension's aggregate on that request alone"
    out: list[SampleDiff] = []
    for rid, b in b_by.items():
        v = v_by.get(rid)
        if v is None:
            continue
        ub, uv = util(b.to_score()), util(v.to_score())
        if ub is None or uv is None or not (uv - ub < 0):
            continue
        out.append(SampleDiff(
            run_id=run.run_id, label=label, dimension=dim, request_id=rid, group=b.group,
            utility_delta=float(uv - ub), ranked_by=how, baseline_values=dict(b.values),
            variant_values=dict(v.values), prompt=_truncate(v.prompt or b.prompt),
            baseline_texts=_answers(b), variant_texts=_answers(v),
        ))
    out.sort(key=lambda d: (d.utility_delta, d.request_id))
    return out


def _is_refusal_driven(*rates: float | None) -> bool:
    return any(r is not None and r > REFUSAL_RULE for r in rates)


def _refusal_note(cell: DeltaCell) -> str:
    rates = [f"{w} {r:.0%}" for w, r in (("variant", cell.refusal_rate), ("baseline", cell.baseline_refusal_rate))
             if r is not None and r > REFUSAL_RULE]
    return (f"refusal-driven: refusal/unparseable rate above {REFUSAL_RULE:.0%} ({', '.join(rates)}); the score "
            "measures refusals, not the behaviour, and is not cited as a gain or loss")


def _cell(run: LoadedRun, base: LoadedRun | None, dim: str, label: str, aggregator: Aggregator,
          opts: CompareOptions) -> _CellWork:
    ds = run.results.dimensions.get(dim)
    cell = DeltaCell(score=ds.score if ds else None, refusal_rate=ds.refusal_rate if ds else None)
    work = _CellWork(cell)
    if base is None:
        cell.refusal_driven = _is_refusal_driven(cell.refusal_rate)
        if cell.refusal_driven:
            cell.note = _refusal_note(cell)
        return work
    bs = base.results.dimensions.get(dim)
    cell.baseline_score = bs.score if bs else None
    cell.baseline_refusal_rate = bs.refusal_rate if bs else None
    cell.refusal_driven = ds is not None and bs is not None and _is_refusal_driven(cell.refusal_rate, cell.baseline_refusal_rate)
    notes: list[str] = [_refusal_note(cell)] if cell.refusal_driven else []
    stored_delta = None
    if cell.score is not None and cell.baseline_score is not None:
        stored_delta = cell.delta = cell.score - cell.baseline_score
    if ds is None or bs is None:
        return work
    b_recs, v_recs = base.samples(dim), run.samples(dim)
    if b_recs is None or v_recs is None:
        which = base if b_recs is None else run
        cell.note = "; ".join(notes + [f"no CI: {which.dir}/samples/{dim}.jsonl absent"])
        return work
    agg = aggregator(dim, run)
    if agg is None:
        cell.note = "; ".join(notes + [f"no CI: no aggregate for dimension {dim!r} (perspective not available)"])
        return work
    notes += [n for n in (_check_stored(agg, b_recs, cell.baseline_score), _check_stored(agg, v_recs, cell.score)) if n]
    boot = paired_bootstrap(_scores(b_recs), _scores(v_recs), agg.score, n_boot=opts.n_boot,
                            seed=_dim_seed(opts.seed, dim), ci_level=opts.ci_level,
                            fast_mean_key=agg.fast_mean_key)
    work.boot = boot
    # The displayed delta is the paired one, the quantity the CI is for.
    cell.delta = cell.delta_paired = boot.delta
    cell.ci_low, cell.ci_high, cell.ci_status = boot.ci_low, boot.ci_high, boot.status  # type: ignore[assignment]
    cell.se, cell.df, cell.n_strata = boot.se, boot.df, boot.n_strata
    cell.within_noise = boot.within_noise
    cell.n_paired, cell.n_boot, cell.n_boot_valid = boot.n_paired, boot.n_boot, boot.n_valid
    cell.n_unpaired_baseline, cell.n_unpaired_variant = boot.n_unpaired_dense, boot.n_unpaired_variant
    if boot.status != "ci":
        notes.append(f"too few samples to tell: {boot.reason}" if boot.status == "too_few" else f"no delta: {boot.reason}")
    elif boot.reason:
        notes.append(boot.reason)
    if boot.n_unpaired_dense or boot.n_unpaired_variant:
        notes.append(f"{boot.n_unpaired_dense} baseline / {boot.n_unpaired_variant} variant requests unpaired (not in "
                     f"the delta or its CI)")
    if stored_delta is not None and boot.delta is not None and abs(stored_delta - boot.delta) > 1e-6:
        notes.append(f"delta on the {boot.n_paired} paired requests ({boot.delta:+.2f}) differs from the difference of "
                     f"the stored scores ({stored_delta:+.2f})")
    if boot.n_paired and boot.n_valid < boot.n_boot:
        notes.append(f"{boot.n_boot - boot.n_valid} of {boot.n_boot} bootstrap replicates had no score")
    cell.note = "; ".join(notes) or None
    work.diffs = _sample_diffs(run, label, dim, b_recs, v_recs, agg)
    return work


def _overall_delta(row: ReportRow, boots: dict[str, BootstrapResult | None], ci_level: float) -> DeltaCell | None:
    dims = [d for d in TRUST_DIMENSIONS if d in row.cells
            and row.cells[d].score is not None and row.cells[d].baseline_score is not None
            and row.cells[d].delta is not None]
    if not dims:
        return None
    delta = sum(row.cells[d].delta for d in dims) / len(dims)  # type: ignore[misc]
    cell = DeltaCell(score=sum(row.cells[d].score for d in dims) / len(dims),  # type: ignore[misc]
                     baseline_score=sum(row.cells[d].baseline_score for d in dims) / len(dims),  # type: ignore[misc]
                     delta=delta)
    notes = []
    bl = [boots.get(d) for d in dims]
    if all(b is not None for b in bl):
        ci = mean_delta_ci(bl, ci_level)  # type: ignore[arg-type]
        cell.ci_low, cell.ci_high, cell.within_noise, cell.ci_status = ci.ci_low, ci.ci_high, ci.within_noise, ci.status  # type: ignore[assignment]
        cell.se, cell.df = ci.se, ci.df
        cell.n_boot = min(b.n_boot for b in bl)  # type: ignore[union-attr]
        cell.n_paired = min(b.n_paired for b in bl)  # type: ignore[union-attr]
        if ci.status != "ci":
            notes.append(f"too few samples to tell: {ci.reason}")
    else:
        cell.ci_status = "too_few"
        notes.append("no CI: some dimensions have no samples to pair")
    rd = [d for d in dims if row.cells[d].refusal_driven]
    if rd:
        notes.append(f"includes refusal-driven dimension(s): {', '.join(rd)}")
    if len(dims) < len(TRUST_DIMENSIONS):
        notes.append(f"mean over {len(dims)} dimensions: {', '.join(dims)}")
    cell.note = "; ".join(notes) or None
    return cell


# ----------------------------------------------------------------------------- main


def _columns(runs: list[LoadedRun]) -> list[str]:
    present = {d for r in runs for d in r.results.dimensions}
    cols = [d for d in TRUST_DIMENSIONS + BENIGN_DIMENSIONS]
    return cols + sorted(present - set(cols))


def _run_ref(run: LoadedRun, label: str, role: str, baseline_id: str | None) -> RunRef:
    m, res = run.results.model, run.results
    return RunRef(
        run_dir=str(run.dir), run_id=run.run_id, label=label, display_name=m.display_name, kind=m.kind,
        fingerprint=m.fingerprint, role=role, baseline_run_id=baseline_id,  # type: ignore[arg-type]
        compression=m.compression, group_size_note=group_size_note(m.compression),
        bits_per_weight=m.bits_per_weight, size_bytes=res.efficiency.size_bytes or m.size_bytes,
        tokens_per_s=res.efficiency.tokens_per_s, peak_load_mem_bytes=res.efficiency.peak_load_mem_bytes,
        backend=res.backend, profile=res.profile, chat_template=m.chat_template,
        system_role_merged=m.system_role_merged, protocol=res.protocol, model_notes=list(m.notes),
    )


def _labels(ordered: list[tuple[LoadedRun, str]], families: dict[str, tuple]) -> dict[str, str]:
    fam_size: dict[tuple, int] = defaultdict(int)
    for key in families.values():
        fam_size[key] += 1
    labels: dict[str, str] = {}
    for run, role in ordered:
        m = run.results.model
        if m.compression is not None and role != "baseline":
            lab = variant_label(m.compression)
            if fam_size.get(families.get(run.run_id, ()), 0) > 1 and m.compression.seed is not None:
                lab += f" s{m.compression.seed}"
        else:
            lab = m.display_name
            if role == "noise_floor":
                g = run.results.profile.gen_seed
                lab += f" (generation seed {g})" if g is not None else f" (seed {run.results.profile.seed})"
        labels[run.run_id] = lab
    counts: dict[str, int] = defaultdict(int)
    for lab in labels.values():
        counts[lab] += 1
    return {rid: (f"{lab} [{rid[:8]}]" if counts[lab] > 1 else lab) for rid, lab in labels.items()}


def build_comparison(
    runs: list[LoadedRun],
    *,
    kind: str = "report",
    baseline: LoadedRun | None = None,
    noise_floor: list[LoadedRun] | None = None,
    options: CompareOptions | None = None,
    aggregator: Aggregator = registry_aggregator,
) -> ComparisonResults:
    opts = options or CompareOptions()
    if baseline is not None and all(r.run_id != baseline.run_id for r in runs):
        runs = [baseline] + list(runs)
    base_of = assign_baselines(runs, baseline)
    noise_floor = list(noise_floor or [])
    nf_base: dict[str, LoadedRun] = {}
    for nf in noise_floor:
        cands = [r for r in runs if base_of[r.run_id] is None and r.results.model.fingerprint == nf.results.model.fingerprint]
        if baseline is not None:
            cands = [baseline]
        if not cands:
            raise BaselineError(f"--noise-floor {nf.dir}: no baseline run of the same model (fingerprint "
                                f"{nf.results.model.fingerprint}); pass a re-run of the dense model")
        nf_base[nf.run_id] = cands[0]

    # Order: each baseline, then its variants grouped by recipe (seeds adjacent), then noise floors.
    families = {r.run_id: k for r in runs if base_of[r.run_id] is not None
                and (k := _family_key(r, base_of[r.run_id].run_id)) is not None}  # type: ignore[union-attr]
    ordered: list[tuple[LoadedRun, str]] = []
    for b in [r for r in runs if base_of[r.run_id] is None]:
        ordered.append((b, "baseline"))
        vs = [r for r in runs if base_of[r.run_id] is not None and base_of[r.run_id].run_id == b.run_id]  # type: ignore[union-attr]
        first_pos = {}
        for i, v in enumerate(vs):
            first_pos.setdefault(families.get(v.run_id, (v.run_id,)), i)
        vs.sort(key=lambda v: (first_pos[families.get(v.run_id, (v.run_id,))],
                               (v.results.model.compression.seed or 0) if v.results.model.compression else 0))
        ordered += [(v, "variant") for v in vs]
        ordered += [(nf, "noise_floor") for nf in noise_floor if nf_base[nf.run_id].run_id == b.run_id]
    labels = _labels(ordered, families)
    dims = _columns([r for r, _ in ordered])

    rows: list[ReportRow] = []
    all_diffs: dict[str, list[SampleDiff]] = defaultdict(list)
    for run, role in ordered:
        base = base_of.get(run.run_id) if role != "noise_floor" else nf_base[run.run_id]
        row = ReportRow(run_id=run.run_id, label=labels[run.run_id], role=role,  # type: ignore[arg-type]
                        baseline_run_id=base.run_id if base else None)
        boots: dict[str, BootstrapResult | None] = {}
        for d in dims:
            w = _cell(run, base, d, labels[run.run_id], aggregator, opts)
            row.cells[d] = w.cell
            boots[d] = w.boot
            if role == "variant":
                all_diffs[d] += w.diffs
        row.overall = compute_overall(run.results.dimensions)
        row.overall_complete = row.overall.trust_mean is not None
        row.overall_score = row.overall.trust_mean if row.overall_complete else row.overall.trust_mean_present
        if base is not None:
            row.overall_delta = _overall_delta(row, boots, opts.ci_level)
        rows.append(row)

    # The noise floor beside every variant's delta: the same baseline, only the generation seed changed.
    for row in rows:
        nf = next((r for r in rows if r.role == "noise_floor" and r.baseline_run_id == row.baseline_run_id), None)
        if row.role == "variant" and nf is not None:
            for d, c in row.cells.items():
                if d in nf.cells:
                    c.noise_floor_delta = nf.cells[d].delta

    # Ties (common: 0/1 outcomes) go to the variant that lost most on the dimension.
    dim_delta = {(r.run_id, d): (c.delta if c.delta is not None else 0.0) for r in rows for d, c in r.cells.items()}
    regressions = {d: sorted(v, key=lambda x: (x.utility_delta, dim_delta[(x.run_id, d)], x.label, x.request_id))[: opts.top_k]
                   for d, v in all_diffs.items() if v}

    # Seed families: >= 2 runs of one recipe with different calibration seeds.
    fam_runs: dict[tuple, list[LoadedRun]] = defaultdict(list)
    for run, role in ordered:
        if role == "variant" and run.run_id in families:
            fam_runs[families[run.run_id]].append(run)
    seed_families: list[SeedFamily] = []
    for key, members in fam_runs.items():
        seeds = [m.results.model.compression.seed for m in members]  # type: ignore[union-attr]
        if len(members) < 2 or len(set(seeds)) < 2:
            continue
        scores = {m.run_id: {d: (m.results.dimensions[d].score if d in m.results.dimensions else None) for d in dims}
                  for m in members}
        seed_families.append(SeedFamily(
            label=variant_label(members[0].results.model.compression),  # type: ignore[arg-type]
            run_ids=[m.run_id for m in members], seeds=seeds, threshold=opts.threshold,
            dimensions=seed_spread(scores, opts.threshold), scores=scores,
        ))

    run_refs = [_run_ref(run, labels[run.run_id], role,
                         (base_of.get(run.run_id) if role != "noise_floor" else nf_base[run.run_id]).run_id  # type: ignore[union-attr]
                         if role != "baseline" else None) for run, role in ordered]
    provenance = [RunProvenance(
        run_id=run.run_id, label=labels[run.run_id], run_dir=str(run.dir), backend=run.results.backend,
        data=run.results.provenance.data, scorers=run.results.provenance.scorers,
        deviations=list(run.results.provenance.deviations),
        dimension_notes={d: list(s.notes) for d, s in run.results.dimensions.items() if s.notes},
        versions=run.results.versions, options=run.results.options,
    ) for run, _ in ordered]

    notes: list[str] = []
    profiles = {(r.results.profile.name, r.results.profile.seed, r.results.profile.limit) for r, _ in ordered}
    if len(profiles) > 1:
        notes.append("runs use different profiles/seeds/limits: " + ", ".join(
            f"{labels[r.run_id]}={r.results.profile.name}/seed {r.results.profile.seed}/limit {r.results.profile.limit}"
            for r, _ in ordered) + "; only paired requests enter the CIs")

    result = ComparisonResults(
        kind=kind,  # type: ignore[arg-type]
        dimensions=dims,
        stats=StatsSettings(n_boot=opts.n_boot, seed=opts.seed, ci_level=opts.ci_level, threshold=opts.threshold,
                            method=CI_METHOD, min_paired=MIN_PAIRED, min_stratum=MIN_STRATUM,
                            refusal_rule=REFUSAL_RULE),
        runs=run_refs, rows=rows, seed_families=seed_families, regressions=regressions,
        recommendation=recommend(rows, run_refs, seed_families, dims, opts.threshold,
                                 "the dense baseline" if kind == "report" else "the baseline",
                                 ci_level=opts.ci_level, refusal_rule=REFUSAL_RULE),
        provenance=provenance, notes=notes,
    )
    return result


def dim_title(d: str) -> str:
    from ..perspectives.registry import dimension_title

    return dimension_title(d)


def fmt(x: float | None, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{nd}f}"


# One mark per evidence state, the same in the terminal, Markdown, HTML and the heatmap.
MARKS = {
    "outside": "",  # the CI excludes 0
    "within": "≈",  # the CI contains 0
    "too_few": "?",  # too few samples to tell: no CI, no noise claim
    "no_ci": "†",  # no CI for another reason (samples absent, perspective not available)
    "refusal": "⊘",  # refusal-driven: not a gain or loss in trust
}
MARK_LEGEND = ("≈ = the CI of Δ contains 0 (within noise); ? = too few samples to tell (no CI, no noise claim); "
               "† = no CI (see notes); ⊘ = refusal-driven (refusal/unparseable rate above 50%: the score measures "
               "refusals; never counted as a gain or loss); no mark = the CI excludes 0; r = refusal/unparseable rate")


def evidence_state(c: DeltaCell) -> str:
    """outside | within | too_few | no_ci | refusal (refusal-driven wins: no claim is made)."""
    if c.refusal_driven:
        return "refusal"
    if c.within_noise is None:
        return "too_few" if c.ci_status == "too_few" else "no_ci"
    return "within" if c.within_noise else "outside"


def delta_mark(c: DeltaCell) -> str:
    return MARKS[evidence_state(c)]


def fmt_refusal(r: float | None) -> str:
    return "r –" if r is None else f"r{r * 100:.0f}%"


def fmt_delta(x: float | None, nd: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:+.{nd}f}".replace("-", "−")
