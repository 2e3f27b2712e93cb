"""`comptrust compress` bad input: one clear line, exit 2, and never a half-written variant."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from comptrust.cli import main


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from comptrust.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("clibase") / "tiny", num_layers=1)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["comptrust", "compress", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _nothing_left(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not list(parent.glob(".*building*"))


@pytest.mark.parametrize("args,needle", [
    (["--method", "gptq", "--bits", "5"], "--bits 5 is not supported; use one of 3, 4, 8"),
    (["--method", "wanda", "--sparsity", "1.5"], "--sparsity 1.5 is out of range"),
    (["--method", "sparsegpt", "--structure", "2:4", "--sparsity", "0.3"], "--structure 2:4 zeroes 2 of every 4 weights"),
    (["--method", "pruneit"], "unknown compression method 'pruneit'; use one of: rtn, gptq, awq, sparsegpt, wanda, magnitude"),
    (["--method", "gptq", "--sparsity", "0.5"], "--sparsity/--structure apply to pruning methods"),
    (["--method", "wanda", "--bits", "4"], "--bits applies to quantization methods"),
    (["--method", "wanda", "--structure", "3:5"], "--structure '3:5' is not supported"),
    (["--method", "gptq", "--group-size", "0"], "--group-size 0 is invalid"),
    (["--method", "gptq", "--symmetry", "maybe"], "--symmetry 'maybe' is not understood"),
])
def test_bad_arguments(monkeypatch, capsys, tmp_path, base, args, needle):
    out = tmp_path / "v"
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), *args)
    assert code == 2
    assert needle in _error_line(err)
    _nothing_left(tmp_path, out)


def test_missing_and_empty_calibration_file(monkeypatch, capsys, tmp_path, base):
    out = tmp_path / "v"
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "gptq",
                           "--calib", str(tmp_path / "nope.txt"))
    assert code == 2 and "does not exist" in _error_line(err) and "nope.txt" in err
    _nothing_left(tmp_path, out)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "gptq", "--calib", str(empty))
    assert code == 2 and "is empty" in _error_line(err)
    _nothing_left(tmp_path, out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"prompt": "no text field"}\n')
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "gptq", "--calib", str(bad))
    assert code == 2 and f"{bad}:2" in _error_line(err)
    _nothing_left(tmp_path, out)


def test_hub_calibration_unreachable(monkeypatch, capsys, tmp_path, base):
    from comptrust.compress import calibration

    monkeypatch.setattr(calibration, "hub_reachable", lambda *a, **k: False)
    out = tmp_path / "v"
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "sparsegpt", "--calib", "c4")
    assert code == 2
    assert _error_line(err) == "error: could not reach the HF hub for c4; use --calib bundled or a local file"
    _nothing_left(tmp_path, out)


def test_output_dir_states(monkeypatch, capsys, tmp_path, base):
    out = tmp_path / "v"
    code, stdout, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "rtn", "--bits", "8")
    assert code == 0, err
    assert "max levels/group" in stdout
    manifest = (out / "manifest.json").read_text()
    # the same request again reuses the variant
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "rtn", "--bits", "8")
    assert code == 0 and "already holds this variant" in err
    # a different request into the same directory is refused and leaves it as it was
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "rtn", "--bits", "4")
    assert code == 2 and "already holds a different variant" in _error_line(err)
    assert (out / "manifest.json").read_text() == manifest
    assert not list(tmp_path.glob(".*building*"))
    # a non-empty directory that is not a variant is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(other), "--method", "rtn")
    assert code == 2 and "not empty" in _error_line(err)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    # compressing a variant again is refused (compress the base instead)
    code, _, err = run_cli(monkeypatch, capsys, "--model", str(out), "--out", str(tmp_path / "v2"), "--method", "rtn")
    assert code == 2 and "already a compressed variant" in _error_line(err)


def test_failure_mid_build_leaves_nothing(monkeypatch, capsys, tmp_path, base):
    from comptrust.compress import build

    def boom(*a, **k):
        raise RuntimeError("simulated crash during compression")

    monkeypatch.setattr(build, "measure_checkpoint", boom)  # after the checkpoint was saved to the temp dir
    out = tmp_path / "v"
    monkeypatch.setattr(sys, "argv", ["comptrust", "compress", "--model", str(base), "--out", str(out), "--method", "rtn"])
    with pytest.raises(RuntimeError, match="simulated"):
        main()
    _nothing_left(tmp_path, out)


def test_json_output(monkeypatch, capsys, tmp_path, base):
    out = tmp_path / "v"
    code, stdout, err = run_cli(monkeypatch, capsys, "--model", str(base), "--out", str(out), "--method", "magnitude",
                                "--structure", "1:2", "--json")
    assert code == 0, err
    m = json.loads(stdout)
    assert m["method"] == "magnitude" and m["structure"] == "1:2" and m["measured"]["nm_pattern_valid"] is True
    assert m["seed"] is None and m["calibration"] is None
