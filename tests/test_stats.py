"""Paired bootstrap, seed spread and noise floor against closed-form cases and scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from comptrust.stats import (
    design_strata,
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


def test_constant_deltas_give_no_ci_never_a_zero_width_one():
    rng = np.random.default_rng(1)
    base = rng.random(60)
    dense, variant = mk(base), mk(base + 0.1)
    r = paired_bootstrap(dense, variant, mean_correct, n_boot=200, seed=3)
    assert r.delta == pytest.approx(10.0)
    assert (r.ci_low, r.ci_high, r.within_noise, r.status) == (None, None, None, "too_few")
    assert "cannot estimate variance" in r.reason
    same = paired_bootstrap(dense, mk(base), mean_correct, n_boot=200, seed=3)
    assert (same.delta, same.ci_low, same.within_noise, same.status) == (0.0, None, None, "too_few")


def test_too_few_paired_requests_make_no_claim():
    r = paired_bootstrap(mk([1, 0, 1, 1, 0, 1, 1, 0, 1]), mk([0, 0, 1, 0, 0, 1, 0, 0, 0]), mean_correct,
                         n_boot=200, fast_mean_key="correct")
    assert r.n_paired == 9 and r.status == "too_few" and r.ci_low is None and r.within_noise is None
    assert "at least 10" in r.reason
    assert r.delta == pytest.approx(-100 * 4 / 9)


def test_one_request_strata_are_pooled_not_zero_variance():
    # the demo's shape: 12 prompts in 12 sub-scenarios, one differing answer
    groups = [f"g{i}" for i in range(12)]
    d = mk([1.0] * 12, groups)
    v = mk([0.0] + [1.0] * 11, groups)
    r = paired_bootstrap(d, v, mean_correct, n_boot=2000, seed=0, fast_mean_key="correct")
    assert r.n_strata == 1 and r.design.startswith("unstratified")
    assert r.status == "ci" and r.ci_high - r.ci_low > 10
    assert r.within_noise is True  # one flipped answer out of 12 is not evidence
    assert r.delta == pytest.approx(-100 / 12)


def test_design_strata_rules():
    d = design_strata(["a"] * 6 + ["b"] * 5 + ["c"] * 2 + ["d"] * 2 + ["e"])  # pool c,d,e = 5: own stratum
    assert d.n_strata == 3 and d.pooled_groups == ("c", "d", "e")
    assert len(set(d.strata[:6])) == 1 and set(d.strata[11:]) == {2}
    d = design_strata(["a"] * 6 + ["b"] * 5 + ["c"] * 2)  # pool of 2 joins the smallest stratum (b)
    assert d.n_strata == 2 and set(d.strata[6:]) == {d.strata[6]} and d.strata[0] != d.strata[6]
    d = design_strata(["x", "y", "z", "x"])
    assert d.n_strata == 1 and set(d.strata) == {0}


def _bernoulli_pair(n=400, pd=0.75, pv=0.55, seed=0):
    rng = np.random.default_rng(seed)
    d = (rng.random(n) < pd).astype(float)
    v = (rng.random(n) < pv).astype(float)
    return d, v


def test_bernoulli_mean_difference_matches_paired_t_interval():
    d, v = _bernoulli_pair()
    r = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=4000, seed=0, fast_mean_key="correct")
    diff = (v - d) * 100
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    ref = scipy.stats.ttest_rel(v * 100, d * 100).confidence_interval(0.95)
    assert r.delta == pytest.approx(diff.mean())
    assert r.se == pytest.approx(se, rel=0.05)  # bootstrap SE x sqrt(n/(n-1)) estimates s/sqrt(n)
    assert r.ci_low == pytest.approx(ref.low, abs=0.1 * se)
    assert r.ci_high == pytest.approx(ref.high, abs=0.1 * se)
    assert r.within_noise is False  # a 20-point drop on 400 prompts is real


def test_small_sample_interval_is_t_based_and_wider_than_percentile():
    rng = np.random.default_rng(5)
    d, v = (rng.random(12) < 0.7).astype(float), (rng.random(12) < 0.5).astype(float)
    r = paired_bootstrap(mk(d), mk(v), mean_correct, n_boot=4000, seed=1, fast_mean_key="correct")
    ref = scipy.stats.ttest_rel(v * 100, d * 100).confidence_interval(0.95)
    perc = np.quantile(r.deltas, [0.025, 0.975])
    assert r.df == 11
    assert r.ci_low == pytest.approx(ref.low, abs=2.0) and r.ci_high == pytest.approx(ref.high, abs=2.0)
    assert r.ci_high - r.ci_low > 1.1 * (perc[1] - perc[0])  # t(11)/z x sqrt(12/11) = 1.17


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
    # through paired_bootstrap, strata are groups of >= 5: A and C (4 together) join B
    groups = ["A"] * 6 + ["B"] * 5 + ["C"]
    seen = []

    def agg(scores):
        seen.append(sum(s.group == "A" for s in scores))
        return mean_correct(scores)

    vals = np.arange(len(groups)) / 10
    r = paired_bootstrap(mk(vals, groups), mk(vals, groups), agg, n_boot=40, seed=1)
    assert r.group_sizes == {"A": 6, "B": 5, "C": 1} and r.n_strata == 2
    assert set(seen) == {6}  # A is a stratum of its own: always 6 draws from A


def test_stratification_draws_only_within_group():
    # group A is all 0 and group B all 1 on both sides: any cross-group draw would move the mean
    groups = ["A"] * 5 + ["B"] * 6
    vals = [0.0] * 5 + [1.0] * 6
    means = []

    def agg(scores):
        means.append(mean_correct(scores))
        return means[-1]

    paired_bootstrap(mk(vals, groups), mk(vals, groups), agg, n_boot=50, seed=0)
    assert set(np.round(means, 9)) == {round(600 / 11, 9)}


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
    d2, v2 = _bernoulli_pair(n=50, pd=0.8, pv=0.6, seed=4)
    other = paired_bootstrap(mk(d2), mk(v2), mean_correct, n_boot=300, seed=2, fast_mean_key="correct")
    m = mean_delta_ci([nf, other])
    assert m.status == "ci" and m.delta == pytest.approx((nf.delta + other.delta) / 2)
    assert m.se == pytest.approx(np.hypot(nf.se, other.se) / 2)
    assert min(nf.df, other.df) <= m.df <= nf.df + other.df
    assert m.ci_low < m.delta < m.ci_high
    const = paired_bootstrap(mk(d), mk(d + 0.2), mean_correct, n_boot=300, seed=2, fast_mean_key="correct")
    none = mean_delta_ci([nf, const])  # a dimension without a CI: the mean makes no claim either
    assert none.status == "too_few" and none.ci_low is None and none.within_noise is None


def test_tiny_coverage_benchmark_has_no_zero_width_and_covers():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "ci_coverage.py"
    spec = importlib.util.spec_from_file_location("ci_coverage", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import io

    rows = mod.run(ns=(12, 48), sizes=(1, 5), kinds=mod.KINDS, sims=60, n_boot=200, out=io.StringIO())
    assert sum(r[7] for r in rows) == 0  # no zero-width interval
    assert all(r[5] is None or r[5] >= 0.8 for r in rows)  # 60 simulations: a loose bound


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


def test_identical_binary_pairs_get_an_agresti_min_interval_not_zero_width():
    d = (np.arange(40) % 3 == 0).astype(float)
    r = paired_bootstrap(mk(d), mk(d), mean_correct, n_boot=200, seed=0, fast_mean_key="correct")
    half = 1.959964 * np.sqrt((1 / 42) / 42) * 100
    assert r.status == "ci" and "Agresti-Min" in r.reason
    assert (r.ci_low, r.ci_high) == pytest.approx((-half, half)) and r.within_noise is True
    flipped = paired_bootstrap(mk(d), mk(1 - d), mean_correct, n_boot=200, seed=0, fast_mean_key="correct")
    assert flipped.status == "ci" and flipped.ci_low < flipped.delta < flipped.ci_high  # mixed +1/-1: bootstrap
