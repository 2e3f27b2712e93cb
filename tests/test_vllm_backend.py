"""The vLLM backend against the HF backend on the same tiny model.

vLLM pins its own torch and compressed-tensors, so it lives in a separate environment
(.venv-vllm, or the interpreter named by COMPTRUST_VLLM_PYTHON; docs/scale-out.md builds it).
The test skips when that environment is absent — building it takes several minutes, too long
for a test run — and otherwise drives the backend there and compares with HF here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("COMPTRUST_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))

PROMPTS = [
    "<|im_start|>user\nthe quick brown fox<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nI agree. I disagree.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nA B C D high low<|im_end|>\n<|im_start|>assistant\n",
]


def _row(key, prompt, seed=0, **params):
    p = {"max_new_tokens": 12, "temperature": 0.0, "top_p": 1.0, "n": 1, "stop": [], "seed": 0, **params}
    return {"key": key, "prompt": prompt, "params": p, "seed": seed}


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory):
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"no vLLM environment at {VLLM_PYTHON} (see docs/scale-out.md to build one)")
    from comptrust.testing import make_tiny_model

    # vLLM's CPU attention kernels need head_dim >= 32: 128 / 2 heads = 64
    return make_tiny_model(tmp_path_factory.mktemp("vllm") / "tiny", hidden_size=128, num_heads=2)


@pytest.fixture(scope="module")
def spec():
    return {
        "greedy": [_row(f"g{i}", p) for i, p in enumerate(PROMPTS)] + [_row("stop", PROMPTS[0], stop=["o"])],
        # same prompt, seeds 7, 7, 8 in one batch ...
        "sampled": [_row("s7a", PROMPTS[0], 7, temperature=1.0), _row("s7b", PROMPTS[0], 7, temperature=1.0),
                    _row("s8", PROMPTS[0], 8, temperature=1.0), _row("x", PROMPTS[1], 9, temperature=1.0)],
        # ... and seed 7 alone: a sample depends on its seed, not on its batch
        "sampled_alone": [_row("s7c", PROMPTS[0], 7, temperature=1.0)],
        # seeds 20, 21, 22 of one prompt go out as one n=3 request (child i has seed 20 + i) ...
        "sampled_run": [_row(f"r{s}", PROMPTS[2], s, temperature=1.0) for s in (20, 21, 22)],
        # ... and must equal the samples asked one by one (what a resumed run asks for)
        "sampled_run_alone": [_row("r21", PROMPTS[2], 21, temperature=1.0)],
        "loglik": [{"key": "l0", "prompt": PROMPTS[1], "choices": [" yes", " no", " maybe"]}],
    }


@pytest.fixture(scope="module")
def vllm_out(vllm_model, spec, tmp_path_factory):
    d = tmp_path_factory.mktemp("vllm-io")
    (d / "in.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    r = subprocess.run([str(VLLM_PYTHON), str(REPO / "tests" / "vllm_worker.py"), str(vllm_model), str(d / "in.json"),
                        str(d / "out.json")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((d / "out.json").read_text())


def _hf(model: Path):
    from comptrust.backends.hf import HFBackend
    from comptrust.models.resolve import ResolvedModel

    return HFBackend(ResolvedModel(ref=str(model), kind="local", path=model, fingerprint="t", display_name="t"), device="cpu")


def _items(rows):
    from comptrust.backends.base import GenItem
    from comptrust.types import GenParams

    return [GenItem(r["key"], r["prompt"], GenParams(**{**r["params"], "stop": tuple(r["params"]["stop"])}), 0, r["seed"])
            for r in rows]


def test_greedy_matches_hf(vllm_model, spec, vllm_out):
    hf = _hf(vllm_model)
    want = {o.key: [o.text, o.n_tokens] for b in hf.generate(_items(spec["greedy"])) for o in b}
    assert vllm_out["greedy"] == want
    assert vllm_out["name"] == "vllm" and vllm_out["device"] == "cpu" and vllm_out["dtype"] == "float32"
    assert "o" not in vllm_out["greedy"]["stop"][0]  # stop strings trimmed like HF


def test_sampling_is_seeded_per_row(vllm_out):
    s = vllm_out["sampled"]
    assert s["s7a"] == s["s7b"] == vllm_out["sampled_alone"]["s7c"]
    assert s["s7a"] != s["s8"]


def test_n_sample_request_equals_samples_alone(vllm_out):
    run = vllm_out["sampled_run"]
    assert run["r21"] == vllm_out["sampled_run_alone"]["r21"]
    assert len({tuple(v) for v in run.values()}) == 3


def test_samples_of_a_prompt_are_grouped_by_consecutive_seeds():
    from comptrust.backends.base import GenItem
    from comptrust.backends.vllm import sample_runs
    from comptrust.types import GenParams

    t = GenParams(max_new_tokens=4, temperature=1.0)
    g = GenParams(max_new_tokens=4)
    items = [GenItem(f"a{s}", "A", t, i, s) for i, s in enumerate((5, 6, 7, 9, 10))]
    items += [GenItem("b", "B", t, 0, 8), GenItem("g0", "A", g, 0, 0), GenItem("g1", "A", g, 1, 0)]
    runs = sample_runs(list(reversed(items)))
    assert sorted([it.key for it in r] for r in runs) == [["a5", "a6", "a7"], ["a9", "a10"], ["b"], ["g0"], ["g1"]]
    assert sorted(it.key for r in runs for it in r) == sorted(it.key for it in items)


def test_loglikelihood_matches_hf(vllm_model, spec, vllm_out):
    from comptrust.backends.base import LoglikItem

    hf = _hf(vllm_model)
    want = dict(next(hf.loglikelihood([LoglikItem(r["key"], r["prompt"], tuple(r["choices"])) for r in spec["loglik"]])))
    assert vllm_out["loglik"]["l0"] == pytest.approx(list(want["l0"]), abs=2e-3)


def test_store_key_names_the_backend():
    from comptrust.store import request_key
    from comptrust.types import GenParams

    p = GenParams(max_new_tokens=4)
    assert request_key("fp", "vllm", "x", p, 0) != request_key("fp", "hf", "x", p, 0)


def test_vllm_missing_is_one_clear_error(monkeypatch):
    import builtins

    from comptrust.backends import vllm as vb
    from comptrust.errors import BackendError

    real = builtins.__import__

    def no_vllm(name, *a, **kw):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(BackendError, match="comptrust\\[vllm\\]"):
        vb._vllm()
