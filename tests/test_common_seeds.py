"""Common random numbers: sample i of a t>0 prompt has the same generation seed for the dense
model and every variant (the seed never depends on the model), and that makes paired deltas less
noisy than independent seeds would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comptrust.runner import EvalConfig, build_plan
from comptrust.seeds import sample_seed
from comptrust.stats import mean_ci
from comptrust.store import request_key


@pytest.fixture(scope="module")
def variant_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with slightly perturbed weights: another fingerprint, similar outputs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("variant") / "tiny-variant"
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(torch.randn_like(p) * 0.002)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def _plan(model: Path, tmp: Path, gen_seed: int = 0, perspectives=("stereotype",)):
    cfg = EvalConfig(model=str(model), perspectives=list(perspectives), out_dir=tmp / "run", profile="smoke",
                     limit=12, gen_seed=gen_seed)
    return build_plan(cfg)


def test_dense_and_variant_sample_i_share_the_seed(tiny_model, variant_model, tmp_path):
    dense, var = _plan(tiny_model, tmp_path), _plan(variant_model, tmp_path)
    assert dense.resolved.fingerprint != var.resolved.fingerprint
    du, vu = dense.units["stereotype"], var.units["stereotype"]
    assert du and all(u.request.params.temperature > 0 for u in du)
    assert {(u.request.id, u.sample_idx) for u in du} == {(u.request.id, u.sample_idx) for u in vu}
    vs = {(u.request.id, u.sample_idx): u for u in vu}
    for u in du:
        v = vs[(u.request.id, u.sample_idx)]
        assert u.seed == v.seed != 0  # the same seed for both models ...
        assert u.key != v.key  # ... but their answers are stored apart
        assert u.seed == sample_seed(0, "stereotype", u.request.id, u.request.params, u.sample_idx)
    assert len({u.seed for u in du}) == len(du)  # every sample of every prompt draws its own stream
    other = _plan(tiny_model, tmp_path, gen_seed=1).units["stereotype"]
    assert [u.request.id for u in other] == [u.request.id for u in du]  # same prompts ...
    assert all(a.seed != b.seed and a.key != b.key for a, b in zip(du, other))  # ... other draws


def test_greedy_units_have_no_seed_and_unchanged_keys(tiny_model, tmp_path):
    plan = _plan(tiny_model, tmp_path, perspectives=("machine_ethics",))
    units = plan.units["machine_ethics"]
    assert units and all(u.request.params.temperature == 0 for u in units)
    for u in units:
        assert u.seed == 0
        assert u.key == request_key(plan.resolved.fingerprint, "hf", u.prompt, u.request.params, u.sample_idx,
                                    u.request.choices)


def _values(model: Path, units, seeds) -> dict[str, float]:
    """Per request: the mean over its samples of a text feature (whether its first word is longer
    than 3 characters): any function of the text shows whether two models' draws are coupled."""
    from comptrust.backends.base import GenItem
    from comptrust.backends.hf import HFBackend
    from comptrust.models.resolve import resolve_model

    be = HFBackend(resolve_model(str(model)), device="cpu", batch_size=16)
    items = [GenItem(f"{u.request.id}/{u.sample_idx}", u.prompt, u.request.params, u.sample_idx, s)
             for u, s in zip(units, seeds)]
    text = {o.key: o.text for batch in be.generate(items) for o in batch}
    per: dict[str, list[float]] = {}
    for u in units:
        t = text[f"{u.request.id}/{u.sample_idx}"]
        words = t.split()
        per.setdefault(u.request.id, []).append(float(bool(words) and len(words[0]) > 3))
    return {k: float(np.mean(v)) for k, v in per.items()}


def test_common_seeds_shrink_the_bootstrap_spread_of_deltas(tiny_model, variant_model, tmp_path):
    dense = _plan(tiny_model, tmp_path)
    var = _plan(variant_model, tmp_path)
    units = dense.units["stereotype"]
    vunits = var.units["stereotype"]
    d = _values(tiny_model, units, [u.seed for u in units])
    crn = _values(variant_model, vunits, [u.seed for u in vunits])
    indep = _values(variant_model, vunits, [u.seed + 7_919 for u in vunits])  # independent draws
    ids = sorted(d)
    groups = [next(u.request.group for u in units if u.request.id == i) for i in ids]
    a = np.array([d[i] for i in ids])
    ci_crn, reps_crn, _ = mean_ci(a, np.array([crn[i] for i in ids]), groups, n_boot=500, seed=0)
    ci_ind, reps_ind, _ = mean_ci(a, np.array([indep[i] for i in ids]), groups, n_boot=500, seed=0)
    # with common seeds the slightly perturbed model mostly draws the same texts
    print(f"bootstrap sd of the delta: common seeds {np.nanstd(reps_crn):.2f}, independent {np.nanstd(reps_ind):.2f}")
    assert np.nanstd(reps_crn) < 0.7 * np.nanstd(reps_ind)
    assert ci_ind.se is not None and (ci_crn.se or 0.0) < ci_ind.se
