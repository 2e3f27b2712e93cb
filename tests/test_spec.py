"""Sweep spec validation: every bad input is one line naming spec.yaml:LINE and the field, exit 2
through the real CLI entry point, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from clihelp import run_cli
from comptrust.spec import SpecError, load_spec, parse_spec

GOOD = """\
description: a tiny sweep
models:
  - ref: {model}
    name: tiny
variants:
  - name: rtn4
    method: rtn
    bits: 4
  - name: gptq4
    method: gptq
    bits: 4
    n_calib: 4
    seq_len: 32
    seeds: [0, 1]
  - name: mag
    method: magnitude
    structure: "2:4"
dimensions: [stereotype, fairness]
profile: smoke
limit: 3
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_good_spec_expands_seeds_and_defaults(tmp_path, tiny_model):
    loaded = load_spec(_write(tmp_path, GOOD.format(model=tiny_model)))
    from comptrust.spec import expand_variant

    names = [n for v in loaded.spec.variants for n, _ in expand_variant(v)]
    assert names == ["rtn4", "gptq4-s0", "gptq4-s1", "mag"]
    assert loaded.data_dir is None and loaded.spec.batch_size == 256  # backends.base.DEFAULT_BATCH_SIZE
    # a plain string is a model ref; its default name comes from the ref
    plain = parse_spec("models: [embedded:smollm2-135m-instruct]\ndimensions: [stereotype]\n", "x.yaml", tmp_path)
    assert plain.spec.models[0].dir_name == "smollm2-135m-instruct"


def test_builtin_specs_are_valid():
    for name in ("paper", "demo", "demo-full"):
        loaded = load_spec(name)
        assert loaded.source == f"{name}.yaml"
    paper = load_spec("paper").spec
    assert paper.profile == "full" and len(paper.dimensions) == 9
    assert {v.method for v in paper.variants} == {"gptq", "awq", "magnitude", "sparsegpt", "wanda"}
    # `comptrust demo --full` runs a larger grid on the same model (tests/test_demo.py: what `demo` covers)
    demo, full = load_spec("demo").spec, load_spec("demo-full").spec
    assert [m.ref for m in full.models] == [m.ref for m in demo.models] == ["embedded:smollm2-135m-instruct"]
    assert {v.method for v in demo.variants} <= {v.method for v in full.variants} and full.dimensions == demo.dimensions


BAD = [
    # (replace this, with this, expected line, field, words in the message)
    ("    method: rtn\n", "    method: quantize\n", 7, "variants[0].method", "unknown compression method 'quantize'"),
    ("    bits: 4\n    n_calib", "    bits: 5\n    n_calib", 11, "variants[1].bits", "bits 5 is not supported; use one of 3, 4, 8"),
    ("  - name: mag\n", "  - name: rtn4\n", 15, "variants[2].name", "already used"),
    ("dimensions: [stereotype, fairness]", "dimensions: [stereotype,\n  honesty]", 19, "dimensions[1]", "unknown dimension 'honesty'"),
    ('    structure: "2:4"\n', '    structure: "2:4"\n    sparsity: 0.6\n', 17, "variants[2].structure", "sparsity 0.5"),
    ("profile: smoke", "profile: smok", 19, "profile", "unknown profile"),
    ("limit: 3", "limit: 3\nbatch: 4", 21, "batch", "unknown field"),
    ("limit: 3", "limit: lots", 20, "limit", "whole number"),
    ("    seeds: [0, 1]\n", "    seeds: [0, 0]\n", 14, "variants[1].seeds", "repeat"),
    ("limit: 3", "limit: 3\nbackend: vlm", 21, "backend", "'hf', 'vllm' or 'openai'"),
    ("limit: 3", "limit: 3\nbackend: openai", 3, "models[0].ref", "does not fit backend openai"),
]


@pytest.mark.parametrize("old,new,line,field,words", BAD, ids=[b[3] for b in BAD])
def test_bad_spec_one_line_exit_2_nothing_written(tmp_path, capsys, tiny_model, old, new, line, field, words):
    text = GOOD.format(model=tiny_model)
    assert old in text
    spec = _write(tmp_path, text.replace(old, new, 1))
    out = tmp_path / "sweep-out"
    code, stdout, err = run_cli(capsys, "sweep", str(spec), "--out", str(out))
    assert code == 2, err
    msg = err.strip()
    assert "\n" not in msg and "Traceback" not in msg
    assert f"spec.yaml:{line}: {field}: " in msg, msg
    assert words in msg
    assert not out.exists()


def test_unresolvable_model_names_its_line(tmp_path, capsys, tiny_model):
    spec = _write(tmp_path, GOOD.format(model=tmp_path / "no-such-model"))
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(out), "--dry-run")
    assert code == 2
    assert "spec.yaml:3: models[0].ref: " in err and "not found" in err
    assert not out.exists()
    # not a model directory at all
    (tmp_path / "empty").mkdir()
    spec = _write(tmp_path, GOOD.format(model=tmp_path / "empty"))
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(out))
    assert code == 2 and "spec.yaml:3: models[0].ref: " in err and "no config.json" in err
    assert not out.exists()


def test_yaml_syntax_and_shape_errors(tmp_path):
    with pytest.raises(SpecError, match=r"^s.yaml:3: YAML syntax"):
        parse_spec("models:\n  - a\n bad: [\n", "s.yaml", tmp_path)
    with pytest.raises(SpecError, match=r"^s.yaml:1: spec: expected a YAML mapping"):
        parse_spec("- just a list\n", "s.yaml", tmp_path)
    with pytest.raises(SpecError, match=r"^s.yaml:1: dimensions: required field missing"):
        parse_spec("models: [embedded:smollm2-135m-instruct]\n", "s.yaml", tmp_path)
    with pytest.raises(SpecError, match=r"^s.yaml:3: data_dir: .* is not a directory"):
        parse_spec("models: [x]\ndimensions: [stereotype]\ndata_dir: nowhere\n", "s.yaml", tmp_path)
    with pytest.raises(SpecError, match=r"^s.yaml:2: variants\[0\].seeds: rtn uses no calibration"):
        parse_spec("models: [x]\nvariants: [{name: a, method: rtn, seeds: [0, 1]}]\ndimensions: [stereotype]\n", "s.yaml", tmp_path)


def test_relative_data_dir_is_relative_to_the_spec(tmp_path):
    (tmp_path / "dt" / "data").mkdir(parents=True)
    loaded = parse_spec("models: [x]\ndimensions: [stereotype]\ndata_dir: dt\n", "s.yaml", tmp_path)
    assert loaded.data_dir == (tmp_path / "dt").resolve()


def test_unknown_builtin(capsys, tmp_path):
    code, _, err = run_cli(capsys, "sweep", "nope", "--out", str(tmp_path / "o"))
    assert code == 2 and "built-in name (demo, demo-full, paper)" in err


def test_backend_field_and_flags(tmp_path, capsys, tiny_model):
    loaded = load_spec(_write(tmp_path, GOOD.format(model=tiny_model) + "backend: vllm\ntensor_parallel_size: 2\n"))
    assert loaded.spec.backend == "vllm" and loaded.spec.tensor_parallel_size == 2
    assert load_spec("demo").spec.backend == "hf"  # the default
    from comptrust.commands.sweep import apply_overrides

    assert apply_overrides(loaded, backend="hf").spec.backend == "hf"
    spec = _write(tmp_path, GOOD.format(model=tiny_model))
    out = tmp_path / "o"
    for cmd in (["sweep", str(spec), "--out", str(out)], ["demo", "--out", str(out)]):
        code, _, err = run_cli(capsys, *cmd, "--backend", "vlm", "--dry-run")
        assert code == 2, err
        msg = err.strip()
        assert "\n" not in msg and "unknown --backend 'vlm'; use hf | vllm | openai" in msg
        assert not out.exists()
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(out), "--backend", "openai", "--dry-run")
    assert code == 2 and "does not fit backend openai" in err and "\n" not in err.strip()
