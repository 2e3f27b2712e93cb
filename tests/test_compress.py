"""Every method on a tiny random Llama: the saved variant's measured facts match the request,
it reloads with plain transformers on CPU, and it generates.

Widths 192/384 make the paper's group size 128 invalid (192 % 128 != 0), so every quantized
variant exercises the group-size fallback (-> 64).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from comptrust.compress.build import build_variant
from comptrust.compress.manifest import Manifest
from comptrust.compress.measure import distinct_per_group, load_dense
from comptrust.compress.methods import CompressSpec

CALIB = dict(n_calib=4, seq_len=32)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from comptrust.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("cbase") / "tiny192", hidden_size=192, intermediate_size=384, num_layers=2)


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("calib") / "calib.txt"
    words = "the river carries small stones past quiet farms while traders count coins and children sing".split()
    p.write_text("\n".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(40)) for i in range(60)))
    return p


def _build(base: Path, out: Path, method: str, calib_file: Path, **kw) -> Manifest:
    spec = CompressSpec.make(method, calib=str(calib_file), **CALIB, **kw)
    return build_variant(spec, str(base), out)


def _reload_and_generate(d: Path) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)  # plain load, as any user would
    enc = tok("You are a helpful assistant.", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 4
    return tok.decode(out[0])


def _linear_weights(d: Path):
    model = load_dense(d)
    out_emb = model.get_output_embeddings()
    return model, [(n, m.weight.detach()) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not out_emb]


@pytest.mark.parametrize("method,bits", [("gptq", 4), ("gptq", 3), ("rtn", 8), ("awq", 4)])
def test_quantized_variant_matches_request(base, calib_file, tmp_path, method, bits):
    out = tmp_path / f"{method}{bits}"
    man = _build(base, out, method, calib_file, bits=bits)
    assert (out / "manifest.json").is_file() and not list(tmp_path.glob(".*building*"))
    assert man.group_size.requested == 128 and man.group_size.effective == 64
    assert "192" in man.group_size.reason
    assert man.storage_format == "pack-quantized"
    # the levels claim, re-derived here from the reloaded weights, not from the manifest
    model, layers = _linear_weights(out)
    assert len(layers) == 14
    for name, w in layers:
        assert int(distinct_per_group(w, 64).max()) <= 2**bits, name
    assert man.measured["max_levels_per_group"] <= 2**bits
    # a 4-bit variant really has fewer levels than a dense matrix (the test can fail)
    assert man.measured["max_levels_per_group"] >= 2
    # storage: packed ints + one scale (and zero point for asym) per 64 weights
    assert bits < man.bits_per_weight < bits + 1.2
    assert float((model.get_output_embeddings().weight == 0).float().mean()) < 0.01
    assert man.symmetric is (method != "awq")
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qcfg["ignore"] == ["lm_head"]
    assert qcfg["config_groups"]["group_0"]["weights"]["num_bits"] == bits
    assert qcfg["config_groups"]["group_0"]["weights"]["group_size"] == 64
    _reload_and_generate(out)


@pytest.mark.parametrize("method,structure", [("sparsegpt", "2:4"), ("wanda", "unstructured"), ("magnitude", "unstructured"),
                                              ("magnitude", "2:4"), ("wanda", "4:8")])
def test_pruned_variant_matches_request(base, calib_file, tmp_path, method, structure):
    out = tmp_path / f"{method}-{structure.replace(':', '')}"
    man = _build(base, out, method, calib_file, structure=structure)
    assert man.sparsity == 0.5
    model, layers = _linear_weights(out)
    for name, w in layers:
        assert abs(float((w == 0).float().mean()) - 0.5) <= 0.01, name
        if structure != "unstructured":
            n, m = (int(x) for x in structure.split(":"))
            zeros = (w.reshape(w.shape[0], -1, m) == 0).sum(-1)
            assert bool((zeros >= n).all()), name
    assert abs(man.measured["sparsity_overall"] - 0.5) <= 0.01
    if structure != "unstructured":
        assert man.measured["nm_pattern_valid"] is True
    assert man.measured["output_embedding_sparsity"] == 0.0
    assert man.storage_format == "dense"
    assert man.group_size.effective is None
    if method == "magnitude":
        assert man.calibration is None
    else:
        assert man.calibration["n_samples"] == 4 and man.calibration["seq_len"] == 32
    _reload_and_generate(out)


def test_manifest_contract_and_reuse(base, calib_file, tmp_path):
    from comptrust.models.resolve import resolve_model

    out = tmp_path / "v"
    man = _build(base, out, "rtn", calib_file, bits=4)
    raw = json.loads((out / "manifest.json").read_text())
    for key in ("fingerprint", "base", "method", "bits", "sparsity", "structure", "group_size", "bits_per_weight",
                "size_bytes", "recipe", "recipe_yaml", "calibration", "seed", "versions", "wall_time_s", "measured"):
        assert key in raw, key
    assert raw["base"]["fingerprint"] == resolve_model(str(base)).fingerprint
    assert raw["group_size"] == {"requested": 128, "effective": 64, "reason": raw["group_size"]["reason"]}
    assert "QuantizationModifier" in raw["recipe_yaml"]
    assert raw["size_bytes"] == sum(p.stat().st_size for p in out.iterdir() if p.name != "manifest.json")
    # resolve_model recognises the variant and takes its fingerprint from the manifest
    r = resolve_model(str(out))
    assert r.kind == "variant" and r.fingerprint == man.fingerprint
    # same request again: reused, not rebuilt
    mtime = (out / "manifest.json").stat().st_mtime_ns
    again = _build(base, out, "rtn", calib_file, bits=4)
    assert again.fingerprint == man.fingerprint and (out / "manifest.json").stat().st_mtime_ns == mtime
    # another seed changes nothing for RTN's weights but is still the same identity (no calibration)...
    assert _fingerprint_of(base, calib_file, "rtn", bits=4, seed=1) == man.fingerprint
    # ...while for a calibrated method the seed changes the calibration sample and so the identity
    assert _fingerprint_of(base, calib_file, "gptq", bits=4, seed=0) != _fingerprint_of(base, calib_file, "gptq", bits=4, seed=1)


def _fingerprint_of(base, calib_file, method, **kw) -> str:
    from transformers import AutoTokenizer

    from comptrust.compress.build import variant_fingerprint
    from comptrust.compress.calibration import build_calibration
    from comptrust.compress.manifest import library_versions
    from comptrust.compress.methods import make_modifiers, recipe_record
    from comptrust.models.resolve import resolve_model

    spec = CompressSpec.make(method, calib=str(calib_file), **CALIB, **kw)
    tok = AutoTokenizer.from_pretrained(base)
    cal = build_calibration(spec.calib, tok, n=spec.n_calib, seq_len=spec.seq_len, seed=spec.seed) if spec.needs_calibration else None
    mods = make_modifiers(spec, group_size=64, ignore=["lm_head"])
    return variant_fingerprint(resolve_model(str(base)).fingerprint, spec, recipe_record(spec, mods, group_size=64, ignore=["lm_head"]),
                               cal, library_versions())


def test_measure_efficiency_in_a_subprocess(base, calib_file, tmp_path):
    from comptrust.compress.efficiency import measure_efficiency
    from comptrust.errors import CompressionError

    out = tmp_path / "q"
    _build(base, out, "rtn", calib_file, bits=4)
    eff = measure_efficiency(out, ["hello there", "the river"], max_new_tokens=3)
    assert eff["generated_tokens"] == 6  # min_new_tokens forces the full length
    assert eff["tokens_per_s"] > 0 and eff["load_s"] > 0
    assert eff["size_bytes"] == sum(p.stat().st_size for p in out.iterdir())
    assert eff["peak_rss_bytes"] > 0 and eff["prompts"] == 2
    # a high-water mark through the first forward is at least what was resident after the load
    assert eff["peak_load_mem_bytes"] is None or eff["peak_load_mem_bytes"] >= eff["load_rss_delta_bytes"]
    with pytest.raises(CompressionError, match="not a model directory"):
        measure_efficiency(tmp_path, ["x"], 1)
