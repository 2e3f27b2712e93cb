"""Statistics for "is this change real?": paired deltas with confidence intervals, seed spread.

All functions are pure: they take SampleScores and an aggregate function (normally a
perspective's `aggregate(...).score`) and return numbers. Nothing here knows about models.

The method (docs/report.md states the same; benchmarks/ci_coverage.py measures its coverage):

- Pairing: the dense model and the variant answered the same requests (same ids); Δ is
  aggregate(variant) − aggregate(dense) on the paired requests only. This one number is both the
  displayed Δ and the centre of its CI.
- Design: a Request is one prompt with its n samples, so resampling requests resamples whole
  prompt clusters. Requests are resampled within strata (sub-scenario groups), but only groups
  with at least MIN_STRATUM paired requests are strata of their own; smaller groups are pooled
  into one stratum, and a pool still below MIN_STRATUM joins the smallest stratum (one stratum
  = an unstratified cluster bootstrap). A one- or two-request stratum would otherwise contribute
  no (or almost no) variance, which is how zero-width intervals came about.
- Interval: bootstrap-t with a bootstrap standard error. B replicates draw requests with
  replacement within each stratum (the same draw for both sides); SE = sd(replicate Δ) x
  sqrt(n / (n − H)) (n paired requests, H strata: undoes the bootstrap's (m−1)/m shrinkage of a
  stratum of m), and the CI is Δ ± t(n − H, (1 + level) / 2) x SE. Percentile intervals
  under-cover at a dozen requests (too narrow by the shrinkage and by z vs t); this one covers
  92–98% across the benchmark grid.
- No claim without evidence: fewer than MIN_PAIRED paired requests, fewer than two valid
  replicates, or SE = 0 (every replicate gives the same Δ: the design cannot estimate variance)
  give no CI, status "too_few", and no within/outside-noise claim. One exception: SE = 0 on a
  mean of values bounded in [0, 1] (the fast path) gets the Agresti-Min interval (`agresti_min`),
  which is not zero-width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .results_schema import SpreadStat
from .types import SampleScore

AggregateFn = Callable[[list[SampleScore]], "float | None"]

# Deltas are differences of floats computed the same way on both sides; this keeps a CI of
# [-1e-15, 1e-15] from an identical pair of runs counting as "outside noise" (or vice versa).
_EPS = 1e-9


@dataclass
class Pairing:
    ids: list[str]
    groups: list[str]
    dense: list[SampleScore]
    variant: list[SampleScore]
    unpaired_dense: list[str]
    unpaired_variant: list[str]
    duplicates: int = 0  # repeated request ids on either side (first occurrence kept)


def _first_by_id(scores: Sequence[SampleScore]) -> tuple[dict[str, SampleScore], int]:
    """The first score per request_id, and how many later duplicates were dropped."""
    by: dict[str, SampleScore] = {}
    for s in scores:
        by.setdefault(s.request_id, s)
    return by, len(scores) - len(by)


def pair_scores(dense: Sequence[SampleScore], variant: Sequence[SampleScore]) -> Pairing:
    """Match requests by request_id; only ids present on both sides are paired. Order follows
    the dense list; the group is the dense side's (the request defines it)."""
    d_by, d_dup = _first_by_id(dense)
    v_by, v_dup = _first_by_id(variant)
    dup = d_dup + v_dup
    ids = [i for i in d_by if i in v_by]
    return Pairing(
        ids=ids,
        groups=[d_by[i].group for i in ids],
        dense=[d_by[i] for i in ids],
        variant=[v_by[i] for i in ids],
        unpaired_dense=[i for i in d_by if i not in v_by],
        unpaired_variant=[i for i in v_by if i not in d_by],
        duplicates=dup,
    )


# Below these the design cannot estimate variance honestly (see the module docstring and
# benchmarks/ci_coverage.py, which measured coverage with these values).
MIN_PAIRED = 10
MIN_STRATUM = 5
CI_METHOD = (f"paired cluster bootstrap-t: requests resampled with replacement within strata (groups of >= "
             f"{MIN_STRATUM} paired requests; smaller groups pooled), SE = sd(replicates) x sqrt(n/(n-H)), "
             f"CI = delta +/- t(n-H) x SE; no CI below {MIN_PAIRED} paired requests or when SE = 0")


@dataclass(frozen=True)
class Design:
    """The resampling strata: strata[i] is the stratum of paired position i."""

    strata: np.ndarray  # int labels, 0..n_strata-1
    n_strata: int
    pooled_groups: tuple[str, ...]  # groups too small to be strata of their own

    def describe(self, n_groups: int) -> str:
        if self.n_strata <= 1:
            return f"unstratified (all {n_groups} group{'s' if n_groups != 1 else ''} in one stratum)"
        if self.pooled_groups:
            return (f"{self.n_strata} strata ({len(self.pooled_groups)} group(s) under {MIN_STRATUM} requests "
                    f"pooled)")
        return f"{self.n_strata} strata (one per group)"


def design_strata(groups: Sequence[str], min_stratum: int = MIN_STRATUM) -> Design:
    """Strata for the resampling: each group with >= min_stratum members is one; the smaller
    groups form one pooled stratum; a pool still below min_stratum joins the smallest stratum
    (ties: the first name in sorted order); with no large group everything is one stratum.
    Depends only on the group labels, so both sides and every variant get the same design."""
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    big = sorted(g for g, c in sizes.items() if c >= min_stratum)
    small = tuple(sorted(g for g, c in sizes.items() if c < min_stratum))
    label: dict[str, int] = {g: i for i, g in enumerate(big)}
    if small:
        if not big:
            label.update({g: 0 for g in small})
        elif sum(sizes[g] for g in small) >= min_stratum:
            label.update({g: len(big) for g in small})
        else:
            smallest = min(big, key=lambda g: (sizes[g], g))
            label.update({g: label[smallest] for g in small})
    strata = np.array([label[g] for g in groups], dtype=np.int64)
    return Design(strata=strata, n_strata=len(set(label.values())) if label else 0, pooled_groups=small)


def stratified_indices(strata: Sequence, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) positions: each row draws, for every stratum, as many positions as the stratum
    has, with replacement, from that stratum only. Strata are visited in sorted order so the
    draw depends only on (strata, seed)."""
    g = np.asarray(strata)
    if g.dtype.kind not in "iu":
        g = g.astype(object)
    cols = []
    for name in sorted(set(g.tolist())):
        pos = np.flatnonzero(g == name)
        draws = rng.integers(0, len(pos), size=(n_boot, len(pos)))
        cols.append(pos[draws])
    if not cols:
        return np.zeros((n_boot, 0), dtype=np.int64)
    return np.concatenate(cols, axis=1)


@dataclass
class CI:
    """A Δ and its interval. status: "ci" (an interval exists), "too_few" (no claim can be made:
    too few paired requests or no estimable variance; `reason` says which), "none" (no Δ)."""

    delta: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    df: int | None
    status: str
    reason: str | None = None

    @property
    def within_noise(self) -> bool | None:
        return within(self.ci_low, self.ci_high)


def t_interval(delta: float | None, deltas: np.ndarray, n: int, n_strata: int, ci_level: float,
               min_paired: int = MIN_PAIRED) -> CI:
    """The bootstrap-t interval of the module docstring from the replicate deltas."""
    if delta is None or math.isnan(delta):
        return CI(None, None, None, None, None, "none", "the aggregate is undefined on the paired requests")
    if n < min_paired:
        return CI(delta, None, None, None, None, "too_few", f"{n} paired requests (a CI needs at least {min_paired})")
    ok = deltas[~np.isnan(deltas)]
    df = n - max(n_strata, 1)
    if ok.size < 2 or df < 1:
        return CI(delta, None, None, None, None, "too_few", f"{ok.size} valid bootstrap replicates")
    sd = float(ok.std(ddof=1))
    if not sd > _EPS:
        return CI(delta, None, None, 0.0, df, "too_few",
                  "every bootstrap replicate gives the same delta: the design cannot estimate variance")
    from scipy.stats import t as student_t

    se = sd * math.sqrt(n / df)
    half = float(student_t.ppf((1 + ci_level) / 2, df)) * se
    return CI(delta, delta - half, delta + half, se, df, "ci")


def bootstrap_ci(groups: Sequence[str], replicate: Callable[[np.ndarray], np.ndarray], *, n_boot: int = 1000,
                 seed: int = 0, ci_level: float = 0.95, min_paired: int = MIN_PAIRED,
                 min_stratum: int = MIN_STRATUM) -> tuple[CI, np.ndarray, Design]:
    """The CI of a paired Δ whose value on any resample is `replicate(idx)`: idx is an (R, n)
    matrix of paired positions, the result R deltas (NaN where undefined); row 0..n-1 in order
    is the point estimate. Returns (CI, the n_boot replicate deltas, the design)."""
    n = len(groups)
    design = design_strata(groups, min_stratum)
    delta_arr = replicate(np.arange(n, dtype=np.int64)[None, :])
    delta = float(delta_arr[0])
    idx = stratified_indices(design.strata, n_boot, np.random.default_rng(seed))
    deltas = np.asarray(replicate(idx), dtype=float) if n else np.full(n_boot, np.nan)
    return t_interval(None if math.isnan(delta) else delta, deltas, n, design.n_strata, ci_level, min_paired), deltas, design


def mean_ci(dense: np.ndarray, variant: np.ndarray, groups: Sequence[str], *, scale: float = 100.0,
            n_boot: int = 1000, seed: int = 0, ci_level: float = 0.95, min_paired: int = MIN_PAIRED,
            min_stratum: int = MIN_STRATUM) -> tuple[CI, np.ndarray, Design]:
    """bootstrap_ci for a score that is `scale x mean(per-request value)` (paired arrays in the
    same order as groups), vectorised; with the Agresti-Min fallback when SE = 0 and the values
    are bounded in [0, 1]."""
    diff = (np.asarray(variant, dtype=float) - np.asarray(dense, dtype=float)) * scale

    def replicate(idx: np.ndarray) -> np.ndarray:
        return diff[idx].mean(axis=1)

    ci, deltas, design = bootstrap_ci(groups, replicate, n_boot=n_boot, seed=seed, ci_level=ci_level,
                                      min_paired=min_paired, min_stratum=min_stratum)
    if ci.status == "too_few" and ci.se == 0.0 and _bounded01(dense) and _bounded01(variant):
        ci = agresti_min(diff / scale, ci.delta, scale, ci_level)  # type: ignore[arg-type]
    return ci, deltas, design


@dataclass
class BootstrapResult:
    delta: float | None  # aggregate(variant) - aggregate(dense) on the paired requests
    ci_low: float | None
    ci_high: float | None
    within_noise: bool | None  # None when no CI
    n_boot: int
    n_valid: int  # replicates where both aggregates were defined
    n_paired: int
    n_unpaired_dense: int
    n_unpaired_variant: int
    unpaired_examples: list[str]
    group_sizes: dict[str, int]
    ci_level: float
    status: str = "none"  # "ci" | "too_few" | "none" (see CI)
    reason: str | None = None  # why there is no CI
    se: float | None = None
    df: int | None = None
    n_strata: int = 0
    design: str = ""
    deltas: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # NaN = invalid rep


def within(lo: float | None, hi: float | None) -> bool | None:
    if lo is None or hi is None:
        return None
    return lo <= _EPS and hi >= -_EPS


def _fast_values(scores: list[SampleScore], key: str) -> np.ndarray | None:
    try:
        return np.array([float(s.values[key]) for s in scores], dtype=float)
    except KeyError:
        return None


def paired_bootstrap(
    dense: Sequence[SampleScore],
    variant: Sequence[SampleScore],
    aggregate_fn: AggregateFn,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
    fast_mean_key: str | None = None,
    fast_scale: float = 100.0,
    min_paired: int = MIN_PAIRED,
    min_stratum: int = MIN_STRATUM,
) -> BootstrapResult:
    """CI of aggregate(variant) - aggregate(dense), paired by request id (module docstring).

    fast_mean_key: when the aggregate is exactly `mean(values[key]) * fast_scale`, pass the key
    to compute the replicates with numpy instead of calling aggregate_fn n_boot times; the
    replicates use the same index draws, so the result equals the slow path.
    """
    p = pair_scores(dense, variant)
    sizes: dict[str, int] = {}
    for g in p.groups:
        sizes[g] = sizes.get(g, 0) + 1
    base = dict(
        n_boot=n_boot, n_paired=len(p.ids), n_unpaired_dense=len(p.unpaired_dense),
        n_unpaired_variant=len(p.unpaired_variant),
        unpaired_examples=(p.unpaired_dense + p.unpaired_variant)[:5], group_sizes=sizes, ci_level=ci_level,
    )
    if not p.ids:
        return BootstrapResult(delta=None, ci_low=None, ci_high=None, within_noise=None, n_valid=0,
                               reason="no request is in both runs", **base)

    dv = vv = None
    if fast_mean_key is not None:
        dv, vv = _fast_values(p.dense, fast_mean_key), _fast_values(p.variant, fast_mean_key)
    if dv is not None and vv is not None:
        ci, deltas, design = mean_ci(dv, vv, p.groups, scale=fast_scale, n_boot=n_boot, seed=seed,
                                     ci_level=ci_level, min_paired=min_paired, min_stratum=min_stratum)
    else:
        def replicate(idx: np.ndarray) -> np.ndarray:
            out = np.full(idx.shape[0], np.nan)
            for r, row in enumerate(idx):
                sd = aggregate_fn([p.dense[i] for i in row])
                sv = aggregate_fn([p.variant[i] for i in row])
                if sd is not None and sv is not None:
                    out[r] = sv - sd
            return out

        ci, deltas, design = bootstrap_ci(p.groups, replicate, n_boot=n_boot, seed=seed, ci_level=ci_level,
                                          min_paired=min_paired, min_stratum=min_stratum)
    return BootstrapResult(delta=ci.delta, ci_low=ci.ci_low, ci_high=ci.ci_high, within_noise=ci.within_noise,
                           n_valid=int((~np.isnan(deltas)).sum()), deltas=deltas, status=ci.status,
                           reason=ci.reason, se=ci.se, df=ci.df, n_strata=design.n_strata,
                           design=design.describe(len(sizes)), **base)


def _bounded01(x: np.ndarray) -> bool:
    x = np.asarray(x, dtype=float)
    return bool(x.size) and bool(np.all((x >= 0) & (x <= 1)))


def agresti_min(diff: np.ndarray, delta: float, scale: float, ci_level: float) -> CI:
    """The fallback when every paired request has the same difference (SE = 0) and the values are
    bounded in [0, 1]: Agresti & Min's (2005) interval for a paired difference of proportions,
    i.e. Wald on the table with 0.5 added to each cell (pseudo-differences +1 and -1 of weight 0.5
    each, 0 of weight 1). 40 identical binary pairs give +/-4.7 points, not +/-0."""
    from scipy.stats import norm

    n2 = diff.size + 2
    m = float(diff.sum()) / n2
    var = (float((diff ** 2).sum()) + 1.0) / n2 - m * m
    se = math.sqrt(max(var, 0.0) / n2)
    half = float(norm.ppf((1 + ci_level) / 2)) * se
    lo, hi = max(m - half, -1.0) * scale, min(m + half, 1.0) * scale
    return CI(delta, min(lo, delta), max(hi, delta), se * scale, diff.size + 1, "ci",
              "no paired request changed its difference: Agresti-Min interval (0.5 added to each cell)")


def noise_floor(dense_a: Sequence[SampleScore], dense_b: Sequence[SampleScore], aggregate_fn: AggregateFn,
                **kw) -> BootstrapResult:
    """Delta and CI between two runs of the same dense model that differ only in the generation
    seed: the size of a change that sampling alone produces."""
    return paired_bootstrap(dense_a, dense_b, aggregate_fn, **kw)


def mean_delta_ci(results: Sequence[BootstrapResult], ci_level: float = 0.95) -> CI:
    """CI of the mean over dimensions of the per-dimension deltas. The dimensions use different
    prompts, so their estimates are independent: SE = sqrt(sum SE_d^2) / D, with
    Welch-Satterthwaite degrees of freedom. No CI ("too_few") unless every dimension has one."""
    if not results:
        return CI(None, None, None, None, None, "none", "no dimension")
    if any(r.delta is None for r in results):
        return CI(None, None, None, None, None, "none", "a dimension has no delta")
    delta = sum(r.delta for r in results) / len(results)  # type: ignore[misc]
    lacking = [r for r in results if r.status != "ci" or r.se is None or r.df is None]
    if lacking:
        return CI(delta, None, None, None, None, "too_few", f"{len(lacking)} of {len(results)} dimensions have no CI")
    var = sum(r.se ** 2 for r in results)  # type: ignore[operator]
    se = math.sqrt(var) / len(results)
    df = int(max(1, math.floor(var ** 2 / sum(r.se ** 4 / r.df for r in results))))  # type: ignore[operator]
    from scipy.stats import t as student_t

    half = float(student_t.ppf((1 + ci_level) / 2, df)) * se
    return CI(delta, delta - half, delta + half, se, df, "ci")


def spread(values: Sequence[float | None], threshold: float = 5.0) -> SpreadStat | None:
    """min/max/std(ddof=1)/range over the defined values; None when there are none."""
    xs = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not xs:
        return None
    arr = np.array(xs)
    rng_ = float(arr.max() - arr.min())
    return SpreadStat(n=len(xs), min=float(arr.min()), max=float(arr.max()),
                      std=float(arr.std(ddof=1)) if len(xs) > 1 else None, range=rng_,
                      exceeds=rng_ > threshold)


def seed_spread(scores_by_run: Mapping[str, Mapping[str, float | None]], threshold: float = 5.0) -> dict[str, SpreadStat]:
    """Per dimension spread across the runs of one variant family (same recipe, different
    calibration seeds). scores_by_run: run -> dimension -> score."""
    dims: list[str] = []
    for sc in scores_by_run.values():
        dims += [d for d in sc if d not in dims]
    out: dict[str, SpreadStat] = {}
    for d in dims:
        s = spread([sc.get(d) for sc in scores_by_run.values()], threshold)
        if s is not None:
            out[d] = s
    return out
