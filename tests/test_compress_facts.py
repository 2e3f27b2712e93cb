"""Compression facts that hold (issue 18): seed families that do not share their calibration data,
vLLM-loadability, bits per real parameter, names that tell recipes apart, a safe and complete
recipe.yaml, measured cost estimates, and a re-run that reads the manifest before any model."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml

from comptrust.compress.build import build_variant
from comptrust.compress.calibration import OVERLAP_WARN, build_calibration, seed_windows
from comptrust.compress.methods import DEFAULT_N_CALIB, DEFAULT_SEQ_LEN, CompressSpec
from comptrust.testing import make_tokenizer

CALIB = dict(n_calib=4, seq_len=32)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from comptrust.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("fbase") / "tiny192", hidden_size=192, intermediate_size=384, num_layers=2)


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("fcalib") / "calib.txt"
    words = "the river carries small stones past quiet farms while traders count coins and children sing".split()
    p.write_text("\n".join(" ".join(words[(i * 5 + j) % len(words)] for j in range(40)) for i in range(60)))
    return p


@pytest.fixture(scope="module")
def gptq4(base, calib_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("fgptq") / "gptq4"
    lines: list[str] = []
    man = build_variant(CompressSpec.make("gptq", bits=4, calib=str(calib_file), **CALIB), str(base), out, log=lines.append)
    return out, man, lines


# -- 1. seed families -----------------------------------------------------------------------------


def test_seed_keyed_partition_is_disjoint_until_the_pool_runs_out():
    n_windows, n = 130, 32
    sets = {s: seed_windows(n_windows, n, s) for s in range(6)}
    assert all(len(v) == n == len(set(v)) for v in sets.values())
    for a in range(4):  # 130 // 32 = 4 disjoint blocks
        for b in range(a + 1, 4):
            assert not set(sets[a]) & set(sets[b]), (a, b)
    assert sets[4] != sets[0] and sets[5] != sets[4]  # past the blocks: seeded draws, still distinct
    assert seed_windows(n_windows, n, 1) == sets[1]  # deterministic


def test_overlap_is_recorded_and_warned_when_high(tmp_path):
    tok = make_tokenizer()
    text = tmp_path / "t.txt"
    text.write_text(" ".join(f"word{i % 97} river{i % 13}" for i in range(3000)))
    s0 = build_calibration(str(text), tok, n=8, seq_len=32, seed=0)
    k = s0.disjoint_seeds
    assert s0.overlap_with_seed0 is None and s0.pool >= 8 * k and k >= 2
    s1 = build_calibration(str(text), tok, n=8, seq_len=32, seed=1)
    assert s1.overlap_with_seed0 == 0.0 and s1.overlap_warning() is None
    assert s1.record()["overlap_with_seed0"] == 0.0 and s1.record()["disjoint_seeds"] == k
    # ask for nearly the whole pool: every seed shares most of seed 0's windows, and says so in one line
    big = s0.pool - 1
    s2 = build_calibration(str(text), tok, n=big, seq_len=32, seed=2)
    assert s2.overlap_with_seed0 > 0.9
    warn = s2.overlap_warning()
    assert warn and "\n" not in warn and "seed 2 shares" in warn and "seed 0" in warn


def test_default_count_gives_disjoint_seed_families_on_the_bundled_text():
    """The stated bound: at the default n_calib x seq_len, seeds 1-3 share at most 5% of their
    windows with seed 0 (the partition makes it 0) with the embedded model's tokenizer."""
    from importlib.util import find_spec

    from transformers import AutoTokenizer

    from comptrust.models.resolve import EMBEDDED

    emb = EMBEDDED["smollm2-135m-instruct"]
    found = find_spec(emb["package"])  # the tokenizer is read from the shipped GGUF: no conversion needed
    ggufs = [Path(d) / emb["file"] for d in (found.submodule_search_locations or [])] if found else []
    ggufs = [g for g in ggufs if g.is_file()]
    if not ggufs:
        pytest.skip(f"embedded model not installed ({emb['install']})")
    tok = AutoTokenizer.from_pretrained(ggufs[0].parent, gguf_file=ggufs[0].name)
    sets = [build_calibration("bundled", tok, n=DEFAULT_N_CALIB, seq_len=DEFAULT_SEQ_LEN, seed=s) for s in range(4)]
    assert all(c.n_samples == DEFAULT_N_CALIB and not c.notes for c in sets)
    for c in sets[1:]:
        assert c.overlap_with_seed0 <= 0.05 < OVERLAP_WARN and c.overlap_warning() is None
        assert not {tuple(x) for x in c.samples} & {tuple(x) for x in sets[0].samples}


def test_spec_defaults_follow_the_compress_defaults():
    from comptrust.spec import VariantEntry

    v = VariantEntry(name="x", method="gptq")
    assert (v.n_calib, v.seq_len) == (DEFAULT_N_CALIB, DEFAULT_SEQ_LEN)
    assert (CompressSpec.make("gptq").n_calib, CompressSpec.make("gptq").seq_len) == (DEFAULT_N_CALIB, DEFAULT_SEQ_LEN)


# -- 2. vLLM cannot load 3-bit weights ------------------------------------------------------------


def _fake_variant(tmp_path: Path, bits: int) -> Path:
    d = tmp_path / f"w{bits}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"quantization_config": {
        "quant_method": "compressed-tensors", "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": bits, "group_size": 64}}}}}))
    return d


def test_vllm_backend_refuses_a_3bit_variant_before_importing_vllm(tmp_path, monkeypatch):
    import sys

    from comptrust.backends.vllm import VLLMBackend, unloadable_reason
    from comptrust.errors import BackendError
    from comptrust.models.resolve import ResolvedModel

    monkeypatch.setitem(sys.modules, "vllm", None)  # any `import vllm` now raises ImportError
    r3 = ResolvedModel(ref="v3", kind="variant", path=_fake_variant(tmp_path, 3), fingerprint="f3", display_name="tiny-gptq-w3")
    with pytest.raises(BackendError) as e:
        VLLMBackend(r3)
    msg = str(e.value)
    assert "\n" not in msg and "3-bit" in msg and "--backend hf" in msg and "not installed" not in msg
    # 4 bits pass the check and reach the import (which fails here: no vLLM in this environment)
    r4 = ResolvedModel(ref="v4", kind="variant", path=_fake_variant(tmp_path, 4), fingerprint="f4", display_name="tiny-gptq-w4")
    assert unloadable_reason(r4) is None
    with pytest.raises(BackendError, match="not installed"):
        VLLMBackend(r4)


def test_3bit_build_warns_once_and_says_transformers_only(base, calib_file, tmp_path):
    lines: list[str] = []
    man = build_variant(CompressSpec.make("rtn", bits=3), str(base), tmp_path / "r3", log=lines.append)
    warns = [line for line in lines if line.startswith("warning:")]
    assert len(warns) == 1 and "3-bit" in warns[0] and "vLLM" in warns[0]
    assert man.loadable_by == ["transformers"]
    assert json.loads((tmp_path / "r3" / "manifest.json").read_text())["loadable_by"] == ["transformers"]


def test_4bit_build_is_vllm_loadable_and_quiet(gptq4):
    _, man, lines = gptq4
    assert man.loadable_by == ["transformers", "vllm"]
    assert not [line for line in lines if line.startswith("warning:")]


# -- 3. bits per real parameter -------------------------------------------------------------------


def test_bits_per_param_overall_is_stored_bits_over_real_parameters(base, gptq4):
    from transformers import AutoModelForCausalLM

    from comptrust.compress.measure import safetensors_tensors

    out, man, _ = gptq4
    real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(base).parameters())
    m = man.measured
    assert m["params"] == real  # not counting weight_scale / weight_zero_point / weight_shape tensors
    stored = sum(t["nbytes"] for t in safetensors_tensors(out).values())
    assert m["weight_bytes"] == stored
    assert m["bits_per_param_overall"] == round(8 * stored / real, 4)
    # the aux tensors exist in the checkpoint (so the old count was wrong on this very variant)
    assert any(k.endswith("weight_scale") for k in safetensors_tensors(out))


# -- 5. names -------------------------------------------------------------------------------------


def test_every_weight_changing_field_is_in_the_default_name(tmp_path):
    base = dict(method="gptq", bits=4, group_size=128, symmetric=None, calib="bundled", n_calib=32, seq_len=512,
                seed=0, chat_template_calib=False)
    changes = dict(method="awq", bits=8, group_size=64, symmetric=False, calib="c4", n_calib=64, seq_len=256, seed=1,
                   chat_template_calib=True)
    ref = CompressSpec.make(**base).short_name()
    for field in dataclasses.fields(CompressSpec):
        if field.name in ("sparsity", "structure", "awq_n_grid"):
            continue  # pruning-only and AWQ-only: below
        if field.name == "awq_n_grid":  # AWQ-only (#17, the demo's CPU-sized AWQ)
            awq = {**base, "method": "awq"}
            assert CompressSpec.make(**awq, awq_n_grid=5).short_name() != CompressSpec.make(**awq).short_name()
            continue
        assert field.name in changes, f"CompressSpec.{field.name} is new: add it to the name and to this test"
        other = CompressSpec.make(**{**base, field.name: changes[field.name]}).short_name()
        assert other != ref, field.name
    prune = {CompressSpec.make("wanda", sparsity=s, structure=st, n_calib=n).short_name()
             for s, st, n in [(0.5, None, 32), (0.55, None, 32), (0.555, None, 32), (None, "2:4", 32), (None, "4:8", 32),
                              (0.5, None, 64)]}
    assert len(prune) == 6
    awq = {CompressSpec.make("awq", awq_n_grid=g).short_name() for g in (None, 5, 10)}
    assert len(awq) == 3
    # the n=64 vs n=128 case of the issue
    assert CompressSpec.make("gptq", n_calib=64).short_name(64) != CompressSpec.make("gptq", n_calib=128).short_name(64)
    # two calibration files of the same stem differ by content hash in the built name (see gptq4)
    assert "/" not in CompressSpec.make("gptq", calib=str(tmp_path / "dir with space" / "my calib.txt")).short_name()


def test_built_name_carries_the_calibration_file_and_its_hash(gptq4, calib_file):
    _, man, _ = gptq4
    sha = man.calibration["source_sha256"]
    assert man.name.endswith(f"-gptq-w4g64-calib.{sha[:8]}-4x32-s0")


# -- 6. recipe.yaml -------------------------------------------------------------------------------


def test_recipe_yaml_is_safe_and_complete(gptq4):
    from llmcompressor.modifiers.quantization import GPTQModifier

    out, man, _ = gptq4
    on_disk = yaml.safe_load((out / "recipe.yaml").read_text())  # llm-compressor's own file fails this
    assert on_disk == man.recipe == yaml.safe_load(man.recipe_yaml)
    gptq = on_disk["default_stage"]["default_modifiers"]["GPTQModifier"]
    for key, value in {"actorder": "static", "dampening_frac": 0.01, "block_size": 128}.items():
        assert gptq[key] == value, key
    assert gptq["config_groups"]["group_0"]["weights"]["group_size"] == 64
    assert not {"initialized_", "started_", "index"} & set(gptq)  # lifecycle state is not recipe
    assert GPTQModifier.model_validate(gptq).dampening_frac == 0.01  # the record is a valid modifier again


# -- 8. re-run ------------------------------------------------------------------------------------


def test_rerun_of_a_finished_variant_loads_no_model(base, calib_file, gptq4, monkeypatch):
    import transformers

    from comptrust.compress import build as build_mod

    out, man, _ = gptq4

    def boom(*a, **k):
        raise AssertionError("a re-run of a finished variant must not load a model, tokenizer or calibration set")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)
    monkeypatch.setattr(build_mod, "build_calibration", boom)
    lines: list[str] = []
    again = build_variant(CompressSpec.make("gptq", bits=4, calib=str(calib_file), **CALIB), str(base), out, log=lines.append)
    assert again.fingerprint == man.fingerprint and any("nothing to do" in line for line in lines)
    # a different request at the same --out still takes the full path (and here hits the patched loader)
    with pytest.raises(AssertionError, match="must not load"):
        build_variant(CompressSpec.make("gptq", bits=4, calib=str(calib_file), n_calib=5, seq_len=32), str(base), out)


# -- 4. cost --------------------------------------------------------------------------------------


def test_builds_are_recorded_and_rescale_the_estimate(gptq4):
    from comptrust.compress.cost import REF_PARAMS, REFERENCE, estimate_seconds, load_records, timings_path

    _, man, _ = gptq4
    assert str(timings_path()) == os.environ["COMPTRUST_COMPRESS_TIMINGS"]  # tests never write the user's cache
    mine = [r for r in load_records() if r["base"] == man.base.fingerprint and r["method"] == "gptq"]
    # other tests of the session build on the same tiny base: this build's own record must be among them
    assert any(r["n_samples"] == 4 and r["seq_len"] == 32 and r["wall_s"] == man.wall_time_s for r in mine), mine
    # a tiny model's build says nothing about the embedded model's: the reference model stands
    assert estimate_seconds("gptq", REF_PARAMS, 128, 512).seconds == pytest.approx(REFERENCE["gptq"].predict(None, 128, 512))
    # a build of similar size measured twice as slow as predicted doubles the estimate
    pred = REFERENCE["awq"].predict(REF_PARAMS, 16, 256)
    recs = [{"method": "awq", "params": REF_PARAMS, "n_samples": 16, "seq_len": 256, "wall_s": 2 * pred}]
    est = estimate_seconds("awq", REF_PARAMS, 128, 512, recs)
    assert est.seconds == pytest.approx(2 * REFERENCE["awq"].predict(None, 128, 512)) and "1 build(s)" in est.source


def test_fingerprint_memo_skips_the_rehash_until_the_file_changes(tmp_path, monkeypatch):
    from comptrust.models import fingerprint as fpm

    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    w = d / "model.safetensors"
    w.write_bytes(b"\0" * 64)
    first = fpm.fingerprint_dir(d)
    calls = []
    real = fpm._sha
    monkeypatch.setattr(fpm, "_sha", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert fpm.fingerprint_dir(d) == first and not calls  # memo hit: not read again
    w.write_bytes(b"\1" * 64)  # same size, new content
    assert fpm.fingerprint_dir(d) != first and len(calls) == 1


def test_compress_still_refuses_an_unknown_architecture_before_loading(base, tmp_path):
    import shutil

    from comptrust.errors import ModelRefError

    odd = tmp_path / "odd"
    shutil.copytree(base, odd)
    cfg = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**cfg, "model_type": "no-such-arch", "architectures": ["NoSuchForCausalLM"]}))
    with pytest.raises(ModelRefError, match="model_type 'no-such-arch'"):
        build_variant(CompressSpec.make("rtn", bits=4), str(odd), tmp_path / "v")
    assert not (tmp_path / "v").exists()
