"""Bad input: one line naming the problem and the fix, exit code 2, no traceback, nothing written."""

import json

import pytest

from clihelp import run_cli


def _assert_clean_error(code, err, out_dir, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0]
    assert not out_dir.exists(), "nothing may be written on bad input"


def test_unknown_model_reference(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", "./no/such/dir", "--out", str(out))
    _assert_clean_error(code, err, out, "not found", "embedded:smollm2-135m-instruct")


def test_model_dir_without_config(capsys, tmp_path):
    out, bad = tmp_path / "run", tmp_path / "empty-model"
    bad.mkdir()
    code, _, err = run_cli(capsys, "eval", "--model", str(bad), "--out", str(out))
    _assert_clean_error(code, err, out, "no config.json")


def test_missing_data_dir(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--data-dir", str(tmp_path / "nope"), "--out", str(out))
    _assert_clean_error(code, err, out, "does not exist", "--data-dir")


def test_unknown_perspective(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--perspectives", "stereotype,honesty", "--out", str(out))
    _assert_clean_error(code, err, out, "unknown perspective 'honesty'", "comptrust ls")


def test_unknown_profile(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--profile", "huge", "--out", str(out))
    _assert_clean_error(code, err, out, "unknown profile 'huge'")


@pytest.mark.parametrize("flags", [["--limit", "0"], ["--limit", "many"], ["--no-such-flag"], ["--batch-size", "-1"]])
def test_malformed_flags(capsys, tmp_path, tiny_model, flags):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--out", str(out), *flags)
    assert code == 2 and "Traceback" not in err and not out.exists()


def test_bad_option_syntax(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--option", "novalue", "--out", str(out))
    _assert_clean_error(code, err, out, "key=value")


def _corrupt_stereotype_dir(tmp_path, line: str):
    from comptrust.data.source import BUNDLED_ROOT
    import shutil

    root = tmp_path / "dt"
    src = BUNDLED_ROOT / "data" / "stereotype"
    shutil.copytree(src, root / "data" / "stereotype")
    f = root / "data" / "stereotype" / "dataset" / "stereotype_bias_data.jsonl"
    rows = f.read_text().splitlines()
    rows.insert(3, line)
    f.write_text("\n".join(rows) + "\n")
    return root


def test_corrupt_data_row_fails_with_file_and_line(capsys, tmp_path, tiny_model):
    root = _corrupt_stereotype_dir(tmp_path, '{"prompt": {"text": "trunc')
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--data-dir", str(root), "--out", str(out))
    _assert_clean_error(code, err, out, "stereotype_bias_data.jsonl:4", "--on-bad-row skip")


def test_corrupt_data_row_skipped_and_counted(capsys, tmp_path, tiny_model):
    root = _corrupt_stereotype_dir(tmp_path, '{"prompt": {"text": "trunc')
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--data-dir", str(root), "--out", str(out),
                           "--on-bad-row", "skip", "--limit", "2", "--quiet")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    skipped = res["provenance"]["data"]["bad_rows_skipped"]
    assert sum(skipped.values()) == 1 and "stereotype_bias_data.jsonl" in next(iter(skipped))


def test_unknown_toxicity_scorer_fails_before_generation(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--perspectives", "toxicity",
                           "--toxicity-scorer", "bogus", "--out", str(out))
    _assert_clean_error(code, err, out, "unknown toxicity scorer 'bogus'")


def test_hub_data_source_offline_is_a_clean_error(capsys, tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("COMPTRUST_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--data-dir", "hub", "--out", str(out))
    _assert_clean_error(code, err, out, "AI-Secure/DecodingTrust", "--data-dir")
