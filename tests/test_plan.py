"""Plan and cost on a tiny spec: exact job lists, prompts, token budgets and time estimates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clihelp import run_cli
from comptrust.plan import (
    DEFAULT_TOKENS_PER_S, REF_PARAMS, BuildJob, EvalJob, Throughput, compress_seconds, default_throughput, estimate,
    expand, measure_workload, measured_throughput, params_from_name, params_in_checkpoint,
)
from comptrust.spec import parse_spec

SPEC = """\
models:
  - ref: {model}
    name: tiny
variants:
  - {{name: rtn4, method: rtn, bits: 4}}
  - {{name: gptq4, method: gptq, bits: 4, n_calib: 32, seq_len: 64, seeds: [0, 1]}}
  - {{name: mag, method: magnitude, sparsity: 0.5}}
dimensions: [stereotype, fairness]
profile: smoke
limit: 3
"""


@pytest.fixture()
def loaded(tmp_path, tiny_model):
    return parse_spec(SPEC.format(model=tiny_model), "spec.yaml", tmp_path)


def test_expand_orders_jobs_dense_first_then_build_eval_pairs(loaded):
    plan = expand(loaded)
    assert [j.id for j in plan.jobs] == [
        "eval/tiny/dense",
        "build/tiny/rtn4", "eval/tiny/rtn4",
        "build/tiny/gptq4-s0", "eval/tiny/gptq4-s0",
        "build/tiny/gptq4-s1", "eval/tiny/gptq4-s1",
        "build/tiny/mag", "eval/tiny/mag",
    ]
    assert len(plan.builds) == 4 and len(plan.evals) == 5
    b = plan.builds[1]
    assert isinstance(b, BuildJob) and b.out_dir == Path("variants/tiny/gptq4-s0") and b.spec.seed == 0
    e = plan.evals[2]
    assert isinstance(e, EvalJob) and e.out_dir == Path("runs/tiny/gptq4-s0") and e.variant_dir == b.out_dir
    assert plan.evals[0].variant_dir is None
    assert [b.spec.seed for b in plan.builds] == [None, 0, 1, None]  # rtn/magnitude have no seed


def test_workload_counts_match_the_runner(loaded, tiny_model, tmp_path):
    w = measure_workload(loaded)
    rows = {r.dimension: r for r in w.rows}
    # limit 3 prompts per dimension; stereotype samples 2 per prompt (smoke n=2) at 24 tokens (the
    # smoke cap), fairness is greedy (n=1) at 20 tokens.
    assert (rows["stereotype"].prompts, rows["stereotype"].samples, rows["stereotype"].token_budget) == (3, 6, 144)
    assert (rows["fairness"].prompts, rows["fairness"].samples, rows["fairness"].token_budget) == (3, 3, 60)
    assert (w.prompts, w.samples, w.token_budget) == (6, 9, 204)
    # the same numbers as runner.build_plan, which formats prompts with the model's tokenizer
    from comptrust.runner import EvalConfig, build_plan

    summary = build_plan(EvalConfig(model=str(tiny_model), perspectives=["stereotype", "fairness"], out_dir=tmp_path / "x",
                                    profile="smoke", limit=3)).summary()
    assert [(s["perspective"], s["prompts"], s["samples"], s["token_budget"]) for s in summary] == \
        [(r.dimension, r.prompts, r.samples, r.token_budget) for r in w.rows]


def test_cost_with_measured_throughput(loaded):
    plan = expand(loaded)
    w = measure_workload(loaded)
    cost = estimate(plan, w, Throughput(12.0, "measured: test"), {"tiny": REF_PARAMS})
    assert (cost.n_builds, cost.n_evals) == (4, 5)
    assert cost.total_prompts == 30 and cost.total_token_budget == 1020
    assert cost.eval_seconds_each["eval/tiny/mag"] == pytest.approx(204 / 12.0)
    # compress.cost's measured models (no build of this size recorded in the test session): RTN 1 s,
    # magnitude 5 s, GPTQ its fixed part + per-token part at 32 x 64 calibration tokens
    from comptrust.compress.cost import REFERENCE

    g = REFERENCE["gptq"].fixed_s + REFERENCE["gptq"].per_ktoken_s * 32 * 64 / 1000
    assert cost.build_seconds == pytest.approx({"build/tiny/rtn4": 1.0, "build/tiny/gptq4-s0": g,
                                                "build/tiny/gptq4-s1": g, "build/tiny/mag": 5.0})
    assert cost.eta_seconds == pytest.approx(6.0 + 2 * g + 5 * 17.0)
    done = estimate(plan, w, Throughput(12.0, "measured: test"), {"tiny": REF_PARAMS},
                    done={"eval/tiny/dense", "build/tiny/gptq4-s0"})
    assert done.eta_seconds == pytest.approx(6.0 + g + 4 * 17.0)
    assert cost.to_json()["per_eval"] == {"prompts": 6, "samples": 9, "token_budget": 204}


def test_default_throughput_scales_with_model_size(loaded):
    plan = expand(loaded)
    w = measure_workload(loaded)
    small = estimate(plan, w, default_throughput(), {"tiny": REF_PARAMS})
    big = estimate(plan, w, default_throughput(), {"tiny": REF_PARAMS * 10})
    assert small.eval_seconds_each["eval/tiny/dense"] == pytest.approx(204 / DEFAULT_TOKENS_PER_S)
    assert big.eval_seconds_each["eval/tiny/dense"] == pytest.approx(10 * 204 / DEFAULT_TOKENS_PER_S)
    assert big.build_seconds["build/tiny/gptq4-s1"] == pytest.approx(10 * small.build_seconds["build/tiny/gptq4-s1"])
    # a measured figure is used as measured (it came from these very models)
    meas = estimate(plan, w, Throughput(12.0, "measured: x"), {"tiny": REF_PARAMS * 10})
    assert meas.eval_seconds_each["eval/tiny/dense"] == pytest.approx(204 / 12.0)


def test_measured_throughput_from_run_dirs(tmp_path):
    dirs = []
    for i, tps in enumerate([10.0, None, 30.0, 20.0]):
        d = tmp_path / f"r{i}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"efficiency": {"tokens_per_s": tps}}))
        dirs.append(d)
    dirs.append(tmp_path / "absent")
    t = measured_throughput(dirs)
    assert t.tokens_per_s == 20.0 and "3 finished run" in t.source
    assert measured_throughput([tmp_path / "absent"]) is None


def test_model_size(tiny_model):
    assert params_from_name("meta-llama/Llama-2-13b-chat-hf") == 13_000_000_000
    assert params_from_name("embedded:smollm2-135m-instruct") == 135_000_000
    assert params_from_name("./my-model") is None
    from transformers import AutoModelForCausalLM

    n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())
    assert params_in_checkpoint(tiny_model) == n


def test_compress_seconds_table():
    from comptrust.compress.methods import CompressSpec

    from comptrust.compress.cost import REFERENCE

    awq = REFERENCE["awq"]
    assert compress_seconds(CompressSpec.make("awq", bits=4, n_calib=128), None, records=[]) == \
        pytest.approx(awq.fixed_s + awq.per_ktoken_s * 128 * 512 / 1000)
    # twice the parameters, twice the time; wanda: DESIGN.md's ~300 s at 64 x 512
    assert compress_seconds(CompressSpec.make("wanda", n_calib=64), REF_PARAMS * 2, records=[]) == pytest.approx(600.0)
    assert compress_seconds(CompressSpec.make("magnitude", structure="2:4"), None, records=[]) == 5.0
    # GPU: the paper's 30 min for a 13b model with 128 calibration samples
    assert compress_seconds(CompressSpec.make("awq", bits=4, n_calib=128), 13_000_000_000, gpu=True) == 1800.0
    assert compress_seconds(CompressSpec.make("gptq", bits=3, n_calib=64), 6_500_000_000, gpu=True) == 450.0
    assert compress_seconds(CompressSpec.make("rtn", bits=8), 13_000_000_000, gpu=True) == 120.0


def test_dry_run_prints_cost_and_writes_nothing(tmp_path, tiny_model, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(model=tiny_model))
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "sweep", str(spec), "--out", str(out), "--dry-run")
    assert code == 0, err
    assert "4 variant builds + 5 eval jobs (0 done already)" in " ".join(err.split())
    assert "30 prompts and at most 1,020 generated tokens" in " ".join(err.split())
    assert f"default: {DEFAULT_TOKENS_PER_S:g} tok/s" in " ".join(err.split())
    assert not out.exists()
