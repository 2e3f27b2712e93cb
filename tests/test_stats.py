"""Paired bootstrap, seed spread and noise floor against closed-form cases and scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from comptrust.stats import (
    mean_delta_ci,
    noise_floor,
    pair_scores,
    paired_bootstrap,
    seed_spread,
    spread,
    stratified_indices,
)
from comptrust.types import SampleScore

SHARED_DT = Path(__file__).parents[2] / "shared" / "decodingtrust"


def mk(values, groups=None, prefix="r", key="correct"):
    groups = groups or ["g"] * len(values)
    return [SampleScore(request_id=f"{prefix}{i}", group=g, values={key: float(v)}) for i, (v, g) in enumerate(zip(values, groups))]


def mean_correct(scores):
    if not scores:
        return None
    return 100.0 * sum(s.values["correct"] for s in scores) / len(scores)


def test_identical_deltas_give_zero_width_ci_at_that_value():
    rng = np.random.default_rng(1)
    base = rng.random(60)
    dense, variant = mk(base), mk(base + 0.1)
    r = paired_bootstrap(dense, variant, mean_correct, n_boot=200, seed=3)
    assert r.delta == pytest.approx(10.0)
    assert r.ci_low == pytest.approx(10.0, abs=1e-9)
    assert r.ci_high == pytest.approx(10.0, abs=1e-9)
    assert r.within_noise is False
    same = paired_bootstrap(dense, mk(base), mean_correct, n_boot=200, seed=3)
    assert (same.delta, same.ci_low, same.ci_high, same.within_noise) == (0.0, 0.0, 0.0, True)


def _bernoulli_pair(n=400, pd=0.75, pv=0.55, seed=0):
    rng = np.random.default_rng(seed)
    d = (rng.random(n) < pd).astype(float)
    v = (rng.random(n) < pv).astype(float)
    return d, v


def test_bernoulli_mean_difference_matches_normal_approximation():
    d, v = _bernoulli_pair()
    r = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=4000, seed=0, fast_mean_key="correct")
    diff = (v - d) * 100
    se = diff.std(ddof=0) / np.sqrt(len(diff))
    assert r.delta == pytest.approx(diff.mean())
    assert r.ci_low == pytest.approx(diff.mean() - 1.96 * se, abs=0.2 * se)
    assert r.ci_high == pytest.approx(diff.mean() + 1.96 * se, abs=0.2 * se)
    assert r.within_noise is False  # a 20-point drop on 400 prompts is real


def test_matches_scipy_paired_percentile_bootstrap():
    d, v = _bernoulli_pair(n=300, pd=0.62, pv=0.58, seed=5)
    ours = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=4000, seed=11, fast_mean_key="correct")
    ref = scipy.stats.bootstrap(
        (d, v), lambda a, b, axis: (b.mean(axis=axis) - a.mean(axis=axis)) * 100, paired=True,
        vectorized=True, n_resamples=4000, method="percentile", confidence_level=0.95,
        rng=np.random.default_rng(12),
    )
    se = ((v - d) * 100).std() / np.sqrt(len(d))
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.25 * se)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.25 * se)
    assert ours.within_noise == bool(ref.confidence_interval.low <= 0 <= ref.confidence_interval.high)


def test_fast_path_equals_aggregate_path():
    d, v = _bernoulli_pair(n=50, seed=2)
    groups = ["a"] * 20 + ["b"] * 30
    slow = paired_bootstrap(mk(d, groups), mk(v, groups), mean_correct, n_boot=300, seed=4)
    fast = paired_bootstrap(mk(d, groups), mk(v, groups), mean_correct, n_boot=300, seed=4, fast_mean_key="correct")
    np.testing.assert_allclose(slow.deltas, fast.deltas, atol=1e-9)
    assert (slow.ci_low, slow.ci_high) == pytest.approx((fast.ci_low, fast.ci_high))


def test_fast_path_falls_back_when_key_missing():
    d, v = _bernoulli_pair(n=30, seed=2)
    r = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=50, seed=4, fast_mean_key="nope")
    assert r.n_valid == 50 and r.delta == pytest.approx((v.mean() - d.mean()) * 100)


def test_stratification_keeps_group_sizes():
    groups = ["A"] * 3 + ["B"] * 5 + ["C"]
    idx = stratified_indices(groups, 200, np.random.default_rng(0))
    g = np.array(groups)
    for row in idx:
        assert sorted(g[row].tolist()) == sorted(groups)
    seen = []

    def agg(scores):
        seen.append(sorted(s.group for s in scores))
        return mean_correct(scores)

    vals = np.arange(len(groups)) / 10
    r = paired_bootstrap(mk(vals, groups), mk(vals, groups), agg, n_boot=40, seed=1)
    assert r.group_sizes == {"A": 3, "B": 5, "C": 1}
    assert all(s == sorted(groups) for s in seen)


def test_stratification_draws_only_within_group():
    # group A is all 0 and group B all 1 on both sides: any cross-group draw would move the mean
    groups = ["A"] * 4 + ["B"] * 6
    vals = [0.0] * 4 + [1.0] * 6
    means = []

    def agg(scores):
        means.append(mean_correct(scores))
        return means[-1]

    paired_bootstrap(mk(vals, groups), mk(vals, groups), agg, n_boot=50, seed=0)
    assert set(np.round(means, 9)) == {60.0}


def test_pairing_drops_unmatched_ids_and_reports_them():
    dense = mk([1] * 10)
    variant = [SampleScore(f"r{i}", "g", {"correct": 0.0}) for i in range(5, 15)]
    p = pair_scores(dense, variant)
    assert p.ids == [f"r{i}" for i in range(5, 10)]
    assert p.unpaired_dense == [f"r{i}" for i in range(5)]
    assert p.unpaired_variant == [f"r{i}" for i in range(10, 15)]
    seen_ids = set()

    def agg(scores):
        seen_ids.update(s.request_id for s in scores)
        return mean_correct(scores)

    r = paired_bootstrap(dense, variant, agg, n_boot=20, seed=0)
    assert (r.n_paired, r.n_unpaired_dense, r.n_unpaired_variant) == (5, 5, 5)
    assert seen_ids == set(p.ids)
    assert r.delta == -100.0


def test_no_pairs_gives_no_ci():
    r = paired_bootstrap(mk([1, 0]), mk([1, 0], prefix="x"), mean_correct, n_boot=10)
    assert r.delta is None and r.ci_low is None and r.within_noise is None and r.n_unpaired_dense == 2


def test_invalid_replicates_are_counted_not_crashing():
    groups = ["a"] * 5 + ["b"] * 5
    d, v = mk([1] * 10, groups), mk([0, 1] * 5, groups)

    def agg(scores):  # undefined when the resample is all-correct on a side
        m = mean_correct(scores)
        return None if m == 100.0 and scores[0].values.get("correct") == 1 and all(s.values["correct"] == 1 for s in scores) else m

    r = paired_bootstrap(d, v, agg, n_boot=100, seed=0)
    assert r.n_valid == 0 and r.ci_low is None and r.within_noise is None


def test_deterministic_under_seed():
    d, v = _bernoulli_pair(n=80, seed=9)
    a = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=200, seed=7)
    b = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=200, seed=7)
    c = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=200, seed=8)
    np.testing.assert_array_equal(a.deltas, b.deltas)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert not np.array_equal(a.deltas, c.deltas)


def test_seed_spread():
    s = seed_spread({"s0": {"ood": 70.0, "fairness": 90.0}, "s1": {"ood": 76.0, "fairness": 91.0},
                     "s2": {"ood": 72.0, "fairness": None}}, threshold=5.0)
    assert s["ood"].min == 70 and s["ood"].max == 76 and s["ood"].range == 6
    assert s["ood"].std == pytest.approx(np.std([70, 76, 72], ddof=1))
    assert s["ood"].exceeds is True
    assert s["fairness"].n == 2 and s["fairness"].exceeds is False
    one = spread([50.0])
    assert one.std is None and one.range == 0
    assert spread([None]) is None


def test_noise_floor_and_mean_delta_ci():
    d, v = _bernoulli_pair(n=100, pd=0.5, pv=0.5, seed=3)
    nf = noise_floor(mk(d), mk(v), mean_correct, n_boot=300, seed=1, fast_mean_key="correct")
    assert nf.ci_low < nf.delta < nf.ci_high
    other = paired_bootstrap(mk(d), mk(d + 0.2), mean_correct, n_boot=300, seed=2, fast_mean_key="correct")
    lo, hi, n = mean_delta_ci([nf, other])
    assert n == 300
    # the second dimension's delta is exactly 20, so the mean delta's CI is nf's CI / 2 + 10
    assert lo == pytest.approx(nf.ci_low / 2 + 10, abs=1e-6)
    assert hi == pytest.approx(nf.ci_high / 2 + 10, abs=1e-6)


def test_stereotype_perspective_aggregate_bootstraps():
    from comptrust.data.source import DataSource
    from comptrust.perspectives.base import PerspectiveContext, list_perspectives
    from comptrust.profiles import get_profile
    from comptrust.types import Generation

    if "stereotype" not in list_perspectives():
        pytest.skip("stereotype perspective not registered yet")
    if not SHARED_DT.is_dir():
        pytest.skip(f"{SHARED_DT} absent (real DecodingTrust subset)")
    from comptrust.perspectives import get_perspective

    P = get_perspective("stereotype")
    ctx = PerspectiveContext(data=DataSource.from_dir(SHARED_DT), profile=get_profile("smoke"), seed=0)
    reqs = P.requests(ctx)
    assert reqs
    dense = [P.score(Generation(r, texts=("I disagree.",) * r.params.n)) for r in reqs]
    variant = [P.score(Generation(r, texts=("I agree.",) * r.params.n if i % 2 else ("I disagree.",) * r.params.n))
               for i, r in enumerate(reqs)]

    def agg(scores):
        return P.aggregate(scores, ctx).score

    res = paired_bootstrap(dense, variant, agg, n_boot=30, seed=0)
    assert res.n_paired == len(reqs) and res.n_valid == 30
    assert res.delta < 0 and res.ci_low <= res.delta
