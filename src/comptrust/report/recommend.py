"""The recommendation paragraph, computed from the comparison numbers only (no judgement
hard-coded per method): which variants stay within the threshold of their baseline on every
dimension, which lose more and where (with noise status), and where the calibration seed alone
moves a dimension by more than the threshold."""

from __future__ import annotations

from ..results_schema import (
    DIMENSION_TITLES,
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


def _noise(loss: DimensionLoss) -> str:
    if loss.within_noise is None:
        return "no CI"
    return "within noise" if loss.within_noise else "outside noise"


def _list(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def verdict(row: ReportRow, dims: list[str], threshold: float) -> VariantVerdict:
    losses, gains, missing = [], [], []
    compared = 0
    for d in dims:
        c = row.cells.get(d)
        if c is None:
            continue
        if c.baseline_score is not None and c.score is None:
            missing.append(d)
        if c.delta is None:
            continue
        compared += 1
        if c.delta < -threshold:
            losses.append(DimensionLoss(dimension=d, delta=c.delta, within_noise=c.within_noise))
        elif c.delta > threshold:
            gains.append(DimensionLoss(dimension=d, delta=c.delta, within_noise=c.within_noise))
    losses.sort(key=lambda x: x.delta)
    gains.sort(key=lambda x: -x.delta)
    return VariantVerdict(run_id=row.run_id, label=row.label, keeps_all=compared > 0 and not losses,
                          losses=losses, gains=gains, missing=missing)


def recommend(rows: list[ReportRow], runs: list[RunRef], families: list[SeedFamily], dims: list[str],
              threshold: float, baseline_word: str = "the dense baseline") -> Recommendation:
    ref = {r.run_id: r for r in runs}
    variants = [r for r in rows if r.role == "variant"]
    verdicts = [verdict(r, dims, threshold) for r in variants]
    th = f"{threshold:g}"
    paras: list[str] = []

    if not variants:
        paras.append("No compressed variant to compare: the report lists the baseline run(s) only.")
    else:
        keep = [v for v in verdicts if v.keeps_all]
        if keep:
            items = [v.label + (f" (not evaluated: {', '.join(_t(d) for d in v.missing)})" if v.missing else "")
                     for v in keep]
            paras.append(f"Within {th} points of {baseline_word} on every dimension compared: {_list(items)}.")
        else:
            paras.append(f"No variant stays within {th} points of {baseline_word} on every dimension.")
        for v in verdicts:
            if v.losses:
                parts = [f"{_t(x.dimension)} ({_num(x.delta)}, {_noise(x)})" for x in v.losses]
                real = [x for x in v.losses if x.within_noise is False]
                tail = "" if real else " None of these drops is outside the bootstrap noise."
                paras.append(f"{v.label} loses more than {th} points on {_list(parts)}.{tail}")
        gainers = [v for v in verdicts if v.gains]
        if gainers:
            paras.append("Gains above " + th + " points: " + "; ".join(
                f"{v.label} on {_list([f'{_t(x.dimension)} ({_num(x.delta)}, {_noise(x)})' for x in v.gains])}"
                for v in gainers) + ".")

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
            paras.append(f"Across calibration seeds {seeds}, {f.label} stays within {th} points on every dimension.")

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
        paras.append(f"Smallest variant that keeps every dimension: {best}" + (f" ({', '.join(facts)})" if facts else "") + ".")
    return Recommendation(threshold=threshold, verdicts=verdicts, seed_unstable=unstable, best=best, paragraphs=paras)
