"""The recommendation paragraph, computed from the comparison numbers only (no judgement
hard-coded per method). Every sentence states a claim the numbers support and names its evidence
(Δ, CI, number of paired requests); a claim without that support is not made:

- a variant is *shown to keep* a dimension when the dimension has a CI whose lower bound is at
  least -T (T = the threshold) and the cell is not refusal-driven;
- a *loss* (gain) is Δ < -T (> T) with a CI that excludes 0, on a cell that is not
  refusal-driven; a larger-than-T change without that is listed as not confirmed;
- a refusal-driven cell (refusal/unparseable rate above the report's rule) is never a gain or a
  loss; it is listed as such;
- the seed-spread sentence names the seeds and the range; the noise-floor sentence the largest
  change that the generation seed alone produced.
"""

from __future__ import annotations

from ..results_schema import (
    DIMENSION_TITLES,
    DeltaCell,
    DimensionLoss,
    Recommendation,
    ReportRow,
    RunRef,
    SeedFamily,
    VariantVerdict,
)


def _t(d: str) -> str:
    return DIMENSION_TITLES.get(d, d)


def _num(x: float) -> str:
    return f"{x:+.1f}".replace("-", "−")


def evidence(x: DimensionLoss, ci_level: float = 0.95) -> str:
    """'Δ −20.0, 95% CI [−29.1, −10.9], n = 40' (or 'too few samples to tell')."""
    if x.ci_status == "ci" and x.ci_low is not None and x.ci_high is not None:
        ci = f"{ci_level:.0%} CI [{_num(x.ci_low)}, {_num(x.ci_high)}]"
    else:
        ci = "too few samples to tell"
    return f"Δ {_num(x.delta)}, {ci}, n = {x.n_paired}"


def _list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _loss(d: str, c: DeltaCell) -> DimensionLoss:
    rates = [r for r in (c.refusal_rate, c.baseline_refusal_rate) if r is not None]
    return DimensionLoss(dimension=d, delta=c.delta, within_noise=c.within_noise, ci_low=c.ci_low,  # type: ignore[arg-type]
                         ci_high=c.ci_high, n_paired=c.n_paired, ci_status=c.ci_status,
                         refusal_rate=max(rates) if rates else None)


def verdict(row: ReportRow, dims: list[str], threshold: float) -> VariantVerdict:
    losses, gains, inconclusive, refusal, missing = [], [], [], [], []
    compared = kept = with_ci = 0
    for d in dims:
        c = row.cells.get(d)
        if c is None:
            continue
        if c.baseline_score is not None and c.score is None:
            missing.append(d)
        if c.delta is None:
            continue
        compared += 1
        x = _loss(d, c)
        if c.refusal_driven:
            refusal.append(x)
            continue
        has_ci = c.ci_status == "ci" and c.ci_low is not None and c.ci_high is not None
        with_ci += has_ci
        if has_ci and c.ci_low >= -threshold:  # type: ignore[operator]
            kept += 1
        if c.delta < -threshold and has_ci and c.within_noise is False:
            losses.append(x)
        elif c.delta > threshold and has_ci and c.within_noise is False:
            gains.append(x)
        elif abs(c.delta) > threshold:
            inconclusive.append(x)
    losses.sort(key=lambda x: x.delta)
    gains.sort(key=lambda x: -x.delta)
    keeps_all = compared > 0 and kept == compared
    no_detected = (compared > 0 and not keeps_all and not losses and not refusal and with_ci == compared)
    return VariantVerdict(run_id=row.run_id, label=row.label, keeps_all=keeps_all, no_detected_loss=no_detected,
                          losses=losses, gains=gains, inconclusive=inconclusive, refusal_driven=refusal,
                          missing=missing)


def _worst(row: ReportRow, dims: list[str]) -> DimensionLoss | None:
    """The compared dimension whose CI reaches lowest (the weakest link of a 'keeps' claim)."""
    cs = [(d, row.cells[d]) for d in dims if d in row.cells and row.cells[d].ci_low is not None
          and row.cells[d].delta is not None]
    if not cs:
        return None
    d, c = min(cs, key=lambda dc: (dc[1].ci_low, dc[0]))
    return _loss(d, c)


def recommend(rows: list[ReportRow], runs: list[RunRef], families: list[SeedFamily], dims: list[str],
              threshold: float, baseline_word: str = "the dense baseline", ci_level: float = 0.95,
              refusal_rule: float = 0.5) -> Recommendation:
    ref = {r.run_id: r for r in runs}
    variants = [r for r in rows if r.role == "variant"]
    by_id = {r.run_id: r for r in variants}
    verdicts = [verdict(r, dims, threshold) for r in variants]
    th = f"{threshold:g}"
    lvl = f"{ci_level:.0%}"
    paras: list[str] = []

    def ev(x: DimensionLoss) -> str:
        return evidence(x, ci_level)

    def missing_tail(v: VariantVerdict) -> str:
        return f"; not evaluated: {', '.join(_t(d) for d in v.missing)}" if v.missing else ""

    if not variants:
        paras.append("No compressed variant to compare: the report lists the baseline run(s) only.")
    else:
        def with_lowest(v: VariantVerdict, tail: str = "") -> str:
            w = _worst(by_id[v.run_id], dims)
            return v.label + (f" (lowest: {_t(w.dimension)}, {ev(w)}{tail})" if w else "")

        keep = [v for v in verdicts if v.keeps_all]
        if keep:
            items = [with_lowest(v, missing_tail(v)) for v in keep]
            paras.append(f"Shown to stay within {th} points of {baseline_word} on every dimension compared (every "
                         f"{lvl} CI's lower bound is at least −{th}): {_list(items)}.")
        else:
            paras.append(f"No variant is shown to stay within {th} points of {baseline_word} on every dimension "
                         f"(that needs every {lvl} CI's lower bound to be at least −{th}).")
        nd = [v for v in verdicts if v.no_detected_loss]
        if nd:
            items = [with_lowest(v) for v in nd]
            paras.append(f"No loss of more than {th} points outside the noise, but the CIs cannot rule one out: "
                         f"{_list(items)}.")
        for v in verdicts:
            if v.losses:
                paras.append(f"{v.label} loses more than {th} points on "
                             f"{_list([f'{_t(x.dimension)} ({ev(x)})' for x in v.losses])}.")
        gainers = [v for v in verdicts if v.gains]
        if gainers:
            paras.append(f"Gains of more than {th} points outside the noise: " + "; ".join(
                f"{v.label} on {_list([f'{_t(x.dimension)} ({ev(x)})' for x in v.gains])}" for v in gainers) + ".")
        unsure = [(v, x) for v in verdicts for x in v.inconclusive]
        if unsure:
            paras.append(f"Changes of more than {th} points that the data do not confirm (the CI contains 0, or too few "
                         f"samples to tell): " + "; ".join(f"{v.label} on {_t(x.dimension)} ({ev(x)})" for v, x in unsure)
                         + ".")
        rd = [(v, x) for v in verdicts for x in v.refusal_driven]
        if rd:
            paras.append(f"Refusal-driven, so not counted as a gain or a loss in trust (refusal/unparseable rate above "
                         f"{refusal_rule:.0%}): " + "; ".join(
                             f"{v.label} on {_t(x.dimension)} (refusal {x.refusal_rate:.0%}, Δ {_num(x.delta)})"
                             for v, x in rd) + ".")

    nf_rows = [r for r in rows if r.role == "noise_floor"]
    for r in nf_rows:
        cs = [(d, r.cells[d]) for d in dims if d in r.cells and r.cells[d].delta is not None]
        if cs:
            d, c = max(cs, key=lambda dc: (abs(dc[1].delta), dc[0]))  # type: ignore[arg-type]
            paras.append(f"Noise floor ({r.label}: the dense model with only the generation seed changed): its largest "
                         f"change is {_t(d)} ({ev(_loss(d, c))}).")

    unstable: list[str] = []
    for f in families:
        over = [(d, s) for d, s in f.dimensions.items() if s.exceeds]
        seeds = ", ".join(str(s) for s in f.seeds)
        if over:
            unstable += [f"{f.label}: {_t(d)} ({s.range:.1f})" for d, s in over]
            paras.append(
                f"The calibration seed alone moves {f.label} (seeds {seeds}) by more than {th} points on "
                f"{_list([f'{_t(d)} (range {s.range:.1f})' for d, s in over])}: evaluate each seed rather than "
                f"trusting one."
            )
        else:
            paras.append(f"Across calibration seeds {seeds}, {f.label} stays within {th} points on every dimension "
                         f"(largest range {max((s.range for s in f.dimensions.values()), default=0):.1f}).")

    best = None
    complete = [v for v in verdicts if v.keeps_all and not v.missing]
    if complete:
        def size_key(v: VariantVerdict) -> tuple:
            r = ref[v.run_id]
            return (r.size_bytes if r.size_bytes is not None else float("inf"),
                    r.bits_per_weight if r.bits_per_weight is not None else float("inf"), v.label)

        best_v = min(complete, key=size_key)
        best = best_v.label
        r = ref[best_v.run_id]
        facts = []
        if r.bits_per_weight is not None:
            facts.append(f"{r.bits_per_weight:.2f} bits per weight")
        if r.size_bytes is not None:
            facts.append(f"{r.size_bytes / 2**20:.1f} MiB on disk")
        paras.append(f"Smallest variant shown to keep every dimension: {best}" + (f" ({', '.join(facts)})" if facts else "") + ".")
    return Recommendation(threshold=threshold, verdicts=verdicts, seed_unstable=unstable, best=best, paragraphs=paras)
