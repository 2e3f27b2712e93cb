"""Coverage of comptrust's paired CIs (comptrust.stats.mean_ci / bootstrap_ci) against a known true delta.

Simulates paired per-request outcomes of a "dense" and a "variant" model with a fixed,
stratified design (the sub-scenario groups are fixed; prompts are drawn within them, as the
profiles do) and runs the project's own CI code on each simulated data set:

- binary:      per-request correct/incorrect (MMLU, ethics, AdvGLUE-like), score = 100 x mean;
- continuous:  per-request value in [0, 1] (toxicity-like), score = 100 x mean;
- dpd:         per-request binary prediction and a drawn binary sensitive attribute; score =
               100 x (1 - |P(pred=1 | a=1) - P(pred=1 | a=0)|) over all requests (fairness-like).

Each stratum has its own fixed parameters; dense and variant are correlated within a request
(the same prompt). The true delta is the population value of the score difference for the
design. Grid: total n in {12, 24, 48, 120, 480} x stratum size {1, 2, 5, 20}.

Prints, per cell: the share of simulations that got a CI (the rest say "too few samples"), the
coverage of the truth among those, the median CI half-width, and zero-width CIs. Last line:
coverage_min=<..> coverage_max=<..> zero_width=<count>.

    python benchmarks/ci_coverage.py [--sims 400] [--n-boot 1000] [--seed 0] [--small]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from comptrust.stats import bootstrap_ci, mean_ci

NS = (12, 24, 48, 120, 480)
SIZES = (1, 2, 5, 20)
KINDS = ("binary", "continuous", "dpd")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _design(n: int, size: int) -> np.ndarray:
    """Stratum label per request: strata of `size` requests (the last one smaller)."""
    return np.arange(n) // size


def _correlated_uniforms(rng, shape, rho: float):
    """(u_dense, u_variant): the variant reuses the dense draw with probability rho (a prompt the
    compression does not change), else draws afresh."""
    u = rng.random(shape)
    keep = rng.random(shape) < rho
    return u, np.where(keep, u, rng.random(shape))


def simulate(kind: str, n: int, size: int, sims: int, rng: np.random.Generator):
    """(strata labels, per simulation either (dense, variant) per-request values of a mean score or
    a replicate function idx -> deltas, true delta)."""
    strata = _design(n, size)
    h = strata.max() + 1
    w = np.bincount(strata) / n  # design weight of each stratum
    if kind == "binary":
        pd = _sigmoid(math.log(3) + rng.normal(0, 0.8, h))  # around 0.75, some strata near 0.95
        pv = _sigmoid(np.log(pd / (1 - pd)) - 0.45)
        truth = 100 * float(w @ (pv - pd))
        ud, uv = _correlated_uniforms(rng, (sims, n), 0.7)
        d = (ud < pd[strata]).astype(float)
        v = (uv < pv[strata]).astype(float)
        return strata, [(d[s], v[s]) for s in range(sims)], truth
    if kind == "continuous":
        mu_d = rng.normal(-1.0, 0.6, h)
        mu_v = mu_d + 0.35
        z = rng.normal(size=(sims, n))
        d = _sigmoid(mu_d[strata] + z + rng.normal(0, 0.5, (sims, n)))
        v = _sigmoid(mu_v[strata] + z + rng.normal(0, 0.5, (sims, n)))
        # truth: z + noise ~ N(0, 1.25), so E[sigmoid(mu + z + noise)] is a 1-D Gauss-Hermite integral
        x, wq = np.polynomial.hermite_e.hermegauss(80)
        wq = wq / wq.sum()

        def expect(mu):
            return _sigmoid(mu[:, None] + math.sqrt(1.25) * x[None, :]) @ wq

        per = expect(mu_v) - expect(mu_d)
        truth = 100 * float(w @ per)
        return strata, [(d[s], v[s]) for s in range(sims)], truth
    # dpd: each request's sensitive attribute is drawn (a property of the data row, as in
    # DecodingTrust's fairness rows), independent of the stratum
    a = (rng.random((sims, n)) < 0.5).astype(float)
    base = _sigmoid(rng.normal(0.0, 0.6, h))
    p_d = np.stack([base, np.clip(base + 0.3, 0, 0.97)])  # [attribute, stratum]
    p_v = np.stack([np.clip(base - 0.05, 0.03, 1), np.clip(base + 0.4, 0, 0.98)])
    ai = a.astype(int)
    ud, uv = _correlated_uniforms(rng, (sims, n), 0.7)
    pred_d = (ud < p_d[ai, strata]).astype(float)
    pred_v = (uv < p_v[ai, strata]).astype(float)

    def pop_score(p):  # the attribute is independent of the stratum: rates are design-weighted
        return 100 * (1 - abs(float(w @ p[1]) - float(w @ p[0])))

    truth = pop_score(p_v) - pop_score(p_d)
    return strata, [_dpd_rep(pred_d[s], pred_v[s], a[s]) for s in range(sims)], truth


def _dpd_rep(pd: np.ndarray, pv: np.ndarray, a: np.ndarray):
    def score(pred, idx):
        aa = a[idx]
        pp = pred[idx]
        n1, n0 = aa.sum(axis=1), (1 - aa).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r1 = (pp * aa).sum(axis=1) / n1
            r0 = (pp * (1 - aa)).sum(axis=1) / n0
        return 100 * (1 - np.abs(r1 - r0))  # NaN when a resample lacks one attribute value

    return lambda idx: score(pv, idx) - score(pd, idx)


def run(ns=NS, sizes=SIZES, kinds=KINDS, sims: int = 400, n_boot: int = 1000, seed: int = 0, out=sys.stdout):
    rows = []
    t0 = time.perf_counter()
    print(f"{'kind':<11}{'n':>5}{'size':>6}{'truth':>9}{'with CI':>9}{'coverage':>10}{'half-width':>12}{'zero-w':>8}", file=out)
    for kind in kinds:
        for n in ns:
            for size in sizes:
                rng = np.random.default_rng([seed, KINDS.index(kind), n, size])
                strata, reps, truth = simulate(kind, n, size, sims, rng)
                groups = [f"g{k}" for k in strata]
                hit = got = zero = 0
                widths = []
                for s, rep in enumerate(reps):
                    if isinstance(rep, tuple):  # a mean score: the project's vectorised path
                        ci, _, _ = mean_ci(rep[0], rep[1], groups, n_boot=n_boot, seed=s)
                    else:
                        ci, _, _ = bootstrap_ci(groups, rep, n_boot=n_boot, seed=s)
                    if ci.status != "ci":
                        continue
                    got += 1
                    if ci.ci_high - ci.ci_low <= 1e-9:
                        zero += 1
                    hit += ci.ci_low <= truth <= ci.ci_high
                    widths.append((ci.ci_high - ci.ci_low) / 2)
                cov = hit / got if got else None
                rows.append((kind, n, size, truth, got / sims, cov, float(np.median(widths)) if widths else None, zero))
                print(f"{kind:<11}{n:>5}{size:>6}{truth:>9.2f}{got / sims:>9.1%}"
                      f"{(f'{cov:.1%}' if cov is not None else '-'):>10}"
                      f"{(f'{np.median(widths):.1f}' if widths else '-'):>12}{zero:>8}", file=out, flush=True)
    covs = [r[5] for r in rows if r[5] is not None]
    print(f"# {sims} simulations per cell, {n_boot} bootstrap replicates each, {time.perf_counter() - t0:.0f} s", file=out)
    print(f"coverage_min={min(covs):.3f} coverage_max={max(covs):.3f} zero_width={sum(r[7] for r in rows)}", file=out)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=400, help="simulated data sets per cell (>= 400 for the table)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="n in {12, 48}, stratum sizes {1, 5} (a quick look)")
    a = ap.parse_args(argv)
    if a.small:
        run(ns=(12, 48), sizes=(1, 5), sims=a.sims, n_boot=a.n_boot, seed=a.seed)
    else:
        run(sims=a.sims, n_boot=a.n_boot, seed=a.seed)


if __name__ == "__main__":
    main()
