"""Statistics for "is this change real?": paired bootstrap deltas, seed spread, noise floor.

All functions are pure: they take SampleScores and an aggregate function (normally a
perspective's `aggregate(...).score`) and return numbers. Nothing here knows about models.

Paired bootstrap: the dense model and the variant answered the same requests (same ids), so
the delta is estimated on the paired requests, and each bootstrap replicate draws request ids
with replacement *within each group* (sub-scenario) and applies the same draw to both sides.
A Request is one prompt with its n samples, so resampling requests resamples whole prompt
clusters. The CI is the percentile interval of the replicate deltas.
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


def stratified_indices(groups: Sequence[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) positions: each row draws, for every group, as many positions as the group
    has, with replacement, from that group only. Groups are visited in sorted order so the
    draw depends only on (groups, seed)."""
    g = np.asarray(groups, dtype=object)
    cols = []
    for name in sorted(set(groups)):
        pos = np.flatnonzero(g == name)
        draws = rng.integers(0, len(pos), size=(n_boot, len(pos)))
        cols.append(pos[draws])
    if not cols:
        return np.zeros((n_boot, 0), dtype=np.int64)
    return np.concatenate(cols, axis=1)


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
    deltas: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # NaN = invalid rep


def percentile_ci(deltas: np.ndarray, ci_level: float) -> tuple[float | None, float | None]:
    ok = deltas[~np.isnan(deltas)]
    if ok.size == 0:
        return None, None
    a = (1 - ci_level) / 2
    lo, hi = np.quantile(ok, [a, 1 - a])
    return float(lo), float(hi)


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
) -> BootstrapResult:
    """Bootstrap CI of aggregate(variant) - aggregate(dense), paired by request id, stratified
    by group.

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
        return BootstrapResult(delta=None, ci_low=None, ci_high=None, within_noise=None, n_valid=0, **base)

    rng = np.random.default_rng(seed)
    idx = stratified_indices(p.groups, n_boot, rng)

    dv = vv = None
    if fast_mean_key is not None:
        dv, vv = _fast_values(p.dense, fast_mean_key), _fast_values(p.variant, fast_mean_key)
    if dv is not None and vv is not None:
        delta: float | None = float((vv.mean() - dv.mean()) * fast_scale)
        deltas = (vv[idx].mean(axis=1) - dv[idx].mean(axis=1)) * fast_scale
    else:
        a_d, a_v = aggregate_fn(list(p.dense)), aggregate_fn(list(p.variant))
        delta = None if a_d is None or a_v is None else float(a_v - a_d)
        deltas = np.full(n_boot, np.nan)
        for r in range(n_boot):
            row = idx[r]
            sd = aggregate_fn([p.dense[i] for i in row])
            sv = aggregate_fn([p.variant[i] for i in row])
            if sd is not None and sv is not None:
                deltas[r] = sv - sd
    lo, hi = percentile_ci(deltas, ci_level)
    return BootstrapResult(delta=delta, ci_low=lo, ci_high=hi, within_noise=within(lo, hi),
                           n_valid=int((~np.isnan(deltas)).sum()), deltas=deltas, **base)


def noise_floor(dense_a: Sequence[SampleScore], dense_b: Sequence[SampleScore], aggregate_fn: AggregateFn,
                **kw) -> BootstrapResult:
    """Delta and CI between two runs of the same dense model (e.g. another sampling seed): the
    size of a change that sampling alone produces."""
    return paired_bootstrap(dense_a, dense_b, aggregate_fn, **kw)


def mean_delta_ci(results: Sequence[BootstrapResult], ci_level: float = 0.95) -> tuple[float | None, float | None, int]:
    """CI of the mean over dimensions of the per-dimension deltas. The dimensions use different
    prompts, so their bootstraps are independent and replicate r of each can be combined.
    Returns (low, high, n_valid); (None, None, 0) when any dimension has no replicates."""
    if not results or any(r.deltas.size == 0 for r in results):
        return None, None, 0
    n = min(r.deltas.size for r in results)
    stacked = np.vstack([r.deltas[:n] for r in results])
    means = stacked.mean(axis=0)  # NaN when any dimension's replicate is invalid
    lo, hi = percentile_ci(means, ci_level)
    return lo, hi, int((~np.isnan(means)).sum())


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
