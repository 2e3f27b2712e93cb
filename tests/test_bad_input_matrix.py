"""The bad-input matrix (docs/bad-input.md): every malformed input gives one `error: ...` line
naming the problem and the fix, exit code 2, no traceback, and leaves nothing half-written.

Cases run in-process through the real CLI entry point (tests/clihelp.run_cli); only the full-disk
case needs a subprocess (a file-size rlimit)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from clihelp import run_cli

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "comptrust" / "bundled" / "decodingtrust"
STEREO = "data/stereotype/dataset/stereotype_bias_data.jsonl"
FAIR = "data/fairness/fairness_data"
FAIR_STEM = "adult_0_200_test_base_rate_0.5"

# -- case builders: (tmp, tiny_model) -> argv; `OUT` in argv is replaced by the output path ----


def _data(tmp: Path, rel: str, content: bytes | str | None = None, copy: str | None = None) -> Path:
    root = tmp / "dt"
    if copy:
        shutil.copytree(BUNDLED / copy, root / copy, dirs_exist_ok=True)
    if content is not None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    (root / "data").mkdir(parents=True, exist_ok=True)
    return root


def _stereo_line(**over) -> str:
    first = (BUNDLED / STEREO).read_text(encoding="utf-8").splitlines()[0]
    rec = json.loads(first)
    rec.update(over)
    return json.dumps(rec)


def _eval(model, *flags) -> list[str]:
    return ["eval", "--model", str(model), "--out", "OUT", "--limit", "2", *flags]


def _eval_data(p: str, root: Path, model) -> list[str]:
    return _eval(model, "-p", p, "--data-dir", str(root))


def _model_dir(tmp: Path, tiny: Path, mutate: Callable[[Path], None]) -> Path:
    d = tmp / "model"
    shutil.copytree(tiny, d)
    mutate(d)
    return d


def _set_config(**over) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(over)
        (d / "config.json").write_text(json.dumps(cfg))
    return f


def _truncate_safetensors(d: Path) -> None:
    st = next(d.glob("*.safetensors"))
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 3])


def _pickle_only(d: Path) -> None:
    for st in d.glob("*.safetensors"):
        st.unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a checkpoint")


def _no_weights(d: Path) -> None:
    for st in d.glob("*.safetensors"):
        st.unlink()


def _spec(tmp: Path, text: str, model) -> list[str]:
    p = tmp / "spec.yaml"
    p.write_text(text.replace("MODEL", str(model)))
    return ["sweep", str(p), "--out", "OUT", "--dry-run"]


GOOD_SPEC = "models: [MODEL]\nvariants:\n  - {name: rtn4, method: rtn, bits: 4}\ndimensions: [stereotype]\n"


def _compress_calib(tmp: Path, model, content: bytes | None, name: str = "calib.txt", n_calib: str = "4") -> list[str]:
    p = tmp / name
    if content is not None:
        p.write_bytes(content)
    return ["compress", "--model", str(model), "--method", "gptq", "--out", "OUT", "--calib", str(p),
            "--n-calib", n_calib, "--seq-len", "16"]


CASES: dict[str, Callable[[Path, Path], list[str]]] = {
    # CLI flags
    "flag: --limit 0": lambda t, m: _eval(m, "--limit", "0"),
    "flag: --limit not a number": lambda t, m: _eval(m, "--limit", "many"),
    "flag: unknown option": lambda t, m: _eval(m, "--no-such-flag"),
    "flag: --batch-size -1": lambda t, m: _eval(m, "--batch-size", "-1"),
    "flag: unknown profile": lambda t, m: _eval(m, "--profile", "huge"),
    "flag: unknown perspective": lambda t, m: _eval(m, "-p", "stereotype,honesty"),
    "flag: empty perspective list": lambda t, m: _eval(m, "-p", " , "),
    "flag: --option without =": lambda t, m: _eval(m, "--option", "novalue"),
    "flag: --on-bad-row maybe": lambda t, m: _eval(m, "--on-bad-row", "maybe"),
    "flag: unknown backend": lambda t, m: _eval(m, "--backend", "tpu"),
    "flag: unknown chat template": lambda t, m: _eval(m, "--chat-template", "klingon"),
    "flag: unknown toxicity scorer": lambda t, m: _eval(m, "-p", "toxicity", "--toxicity-scorer", "oracle"),
    "flag: model path does not exist": lambda t, m: _eval("./no/such/dir"),
    "flag: --data-dir does not exist": lambda t, m: _eval(m, "--data-dir", str(t / "nope")),
    "flag: --data-dir without data/": lambda t, m: (t.joinpath("empty").mkdir(), _eval(m, "--data-dir", str(t / "empty")))[1],
    "flag: unknown command": lambda t, m: ["evaluate", "--out", "OUT"],
    "flag: sweep without spec": lambda t, m: ["sweep", "--out", "OUT"],
    "flag: sweep spec not found": lambda t, m: ["sweep", str(t / "nope.yaml"), "--out", "OUT"],
    # sweep specs
    "spec: YAML syntax error": lambda t, m: _spec(t, "models: [MODEL\ndimensions: [stereotype", m),
    "spec: empty file": lambda t, m: _spec(t, "", m),
    "spec: a list, not a mapping": lambda t, m: _spec(t, "- MODEL\n", m),
    "spec: unknown key (typo)": lambda t, m: _spec(t, GOOD_SPEC + "dimension: [toxicity]\n", m),
    "spec: variant name escapes the dir": lambda t, m: _spec(t, GOOD_SPEC.replace("name: rtn4", "name: ../../etc"), m),
    "spec: model name escapes the dir": lambda t, m: _spec(t, GOOD_SPEC.replace("models: [MODEL]", "models: [{ref: MODEL, name: ../x}]"), m),
    "spec: absolute variant name": lambda t, m: _spec(t, GOOD_SPEC.replace("name: rtn4", "name: /etc/passwd"), m),
    "spec: variant name with a newline": lambda t, m: _spec(t, GOOD_SPEC.replace("name: rtn4", 'name: "rtn4\\n"'), m),
    "spec: variant named dense": lambda t, m: _spec(t, GOOD_SPEC.replace("name: rtn4", "name: dense"), m),
    "spec: duplicate variant names": lambda t, m: _spec(t, GOOD_SPEC.replace("dimensions", "  - {name: rtn4, method: rtn, bits: 8}\ndimensions"), m),
    "spec: bits of the wrong type": lambda t, m: _spec(t, GOOD_SPEC.replace("bits: 4", "bits: four"), m),
    "spec: unknown method": lambda t, m: _spec(t, GOOD_SPEC.replace("method: rtn", "method: zip"), m),
    "spec: unknown dimension": lambda t, m: _spec(t, GOOD_SPEC.replace("[stereotype]", "[honesty]"), m),
    # data files
    "data: truncated JSONL line": lambda t, m: _eval_data("stereotype", _data(t, STEREO, _stereo_line() + "\n" + _stereo_line()[:57] + "\n"), m),
    "data: JSONL field of the wrong type": lambda t, m: _eval_data("stereotype", _data(t, STEREO, _stereo_line(prompt=42) + "\n"), m),
    "data: JSONL in a wrong encoding": lambda t, m: _eval_data("stereotype", _data(t, STEREO, _stereo_line().encode("utf-16")), m),
    "data: empty JSONL file": lambda t, m: _eval_data("stereotype", _data(t, STEREO, ""), m),
    "data: JSONL line not an object": lambda t, m: _eval_data("stereotype", _data(t, STEREO, "[1, 2, 3]\n"), m),
    "data: mismatched .npy lengths": lambda t, m: _eval_data("fairness", _data(t, f"{FAIR}/gt_labels_{FAIR_STEM}.npy", _npy([0, 1, 0]), copy=FAIR), m),
    "data: corrupt .npy": lambda t, m: _eval_data("fairness", _data(t, f"{FAIR}/gt_labels_{FAIR_STEM}.npy", b"\x93NUMPY garbage", copy=FAIR), m),
    "data: truncated JSON document": lambda t, m: _eval_data("ood", _data(t, "data/ood/style.json", (BUNDLED / "data/ood/style.json").read_text()[:200]), m),
    "data: JSON of the wrong shape": lambda t, m: _eval_data("advglue", _data(t, "data/adv-glue/dev.json", "[1, 2]"), m),
    "data: CSV missing a column": lambda t, m: _eval_data("machine_ethics", _data(t, "data/machine_ethics/ethics/commonsense/cm_test.csv", "label,text\n0,hello\n"), m),
    # model directories
    "model: missing config.json": lambda t, m: _eval(_model_dir(t, m, lambda d: (d / "config.json").unlink())),
    "model: config.json not JSON": lambda t, m: _eval(_model_dir(t, m, lambda d: (d / "config.json").write_text("{nope"))),
    "model: truncated safetensors": lambda t, m: _eval(_model_dir(t, m, _truncate_safetensors)),
    "model: no weight files": lambda t, m: _eval(_model_dir(t, m, _no_weights)),
    "model: pickle weights only": lambda t, m: _eval(_model_dir(t, m, _pickle_only)),
    "model: custom code without --trust-remote-code": lambda t, m: _eval(_model_dir(t, m, _set_config(auto_map={"AutoModelForCausalLM": "x.Y"}))),
    "model: unknown architecture": lambda t, m: _eval(_model_dir(t, m, _set_config(model_type="no-such-arch", architectures=["NoSuchForCausalLM"]))),
    "model: corrupt GGUF": lambda t, m: (t.joinpath("bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage"), _eval(t / "bad.gguf"))[1],
    # calibration files
    "calib: file does not exist": lambda t, m: _compress_calib(t, m, None),
    "calib: empty file": lambda t, m: _compress_calib(t, m, b""),
    "calib: binary, not text": lambda t, m: _compress_calib(t, m, bytes(range(256)) * 8),
    "calib: JSONL without text": lambda t, m: _compress_calib(t, m, b'{"x": 1}\n{"y": 2}\n', "calib.jsonl"),
    # hardening II (issue 16)
    "data: perspective files absent (0 prompts)": lambda t, m: _eval_data("stereotype", _data(t, "data/README", "no files"), m),
    "flag: misspelt --option key": lambda t, m: _eval(m, "-p", "fairness", "--option", "fairnes_unknown_policy=exclude"),
    "calib: far too small for --n-calib": lambda t, m: _compress_calib(t, m, b"the quick brown fox jumps over the lazy dog", n_calib="512"),
    "data: 0-byte .npy": lambda t, m: _eval_data("fairness", _data(t, f"{FAIR}/gt_labels_{FAIR_STEM}.npy", b"", copy=FAIR), m),
    "flag: model path with terminal escapes": lambda t, m: _eval(str(t / "no\x1b[2J\x1b]0;pwned\x07\u202edir")),
    "env: --out path with terminal escapes": lambda t, m: (t.joinpath("f\x1b[31m").write_text("x"), ["eval", "--model", str(m), "--out", str(t / "f\x1b[31m" / "run")])[1],
    "env: --out is an existing file": lambda t, m: (t.joinpath("afile").write_text("x"), ["eval", "--model", str(m), "--out", str(t / "afile")])[1],
    "compress: --group-size 7": lambda t, m: ["compress", "--model", str(m), "--method", "gptq", "--group-size", "7", "--out", "OUT"],
    "flag: perspective scorer unreachable": lambda t, m: _eval(m, "-p", "toxicity", "--toxicity-scorer", "perspective",
                                                                "--option", "toxicity_perspective_url=http://127.0.0.1:9"),
    # environment
    "env: output dir not writable": lambda t, m: ["eval", "--model", str(m), "--limit", "1", "--out", "/proc/comptrust-run"],
    "env: output path under a file": lambda t, m: (t.joinpath("afile").write_text("x"), ["eval", "--model", str(m), "--limit", "1", "--out", str(t / "afile" / "run")])[1],
}


# What the line must say for cases whose message was fixed or matters most.
NEEDLES = {
    "data: JSONL field of the wrong type": "'prompt' must be an object",
    "model: config.json not JSON": "config.json is not a valid model config",
    "model: truncated safetensors": "truncated or corrupt",
    "model: pickle weights only": "--allow-pickle",
    "model: custom code without --trust-remote-code": "--trust-remote-code",
    "model: unknown architecture": "model_type 'no-such-arch'",
    "spec: variant name escapes the dir": "not a safe directory name",
    "spec: variant name with a newline": "not a safe directory name",
    "env: output dir not writable": "cannot create the run directory",
    "flag: unknown option": "No such option: --no-such-flag",
    "data: perspective files absent (0 prompts)": "stereotype_bias_data.jsonl not found",
    "flag: misspelt --option key": "fairnes_unknown_policy",
    "calib: far too small for --n-calib": "distinct windows exist, fewer than --n-calib 512",
    "data: 0-byte .npy": f"gt_labels_{FAIR_STEM}.npy: empty or truncated",
    "flag: model path with terminal escapes": "no\\x1b[2J\\x1b]0;pwned\\x07\\u202edir",
    "env: --out path with terminal escapes": "f\\x1b[31m",
    "env: --out is an existing file": "exists and is not a directory",
    "compress: --group-size 7": "below the smallest supported group size 8",
    "flag: perspective scorer unreachable": "cannot be reached",
}

# Environment a case needs (set for that case only).
CASE_ENV = {"flag: perspective scorer unreachable": {"PERSPECTIVE_API_KEY": "not-a-real-key"}}


def _npy(values) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.array(values))
    return buf.getvalue()


def _cache_locks() -> set[Path]:
    from comptrust.models.resolve import cache_dir

    return set((cache_dir() / "locks").glob("*.lock"))


def _written(path: Path) -> list[Path]:
    """Files that look finished: anything but dot-temp files."""
    if not path.exists():
        return []
    return [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, capsys, tmp_path, tiny_model, monkeypatch):
    out = tmp_path / "out"
    for k, v in CASE_ENV.get(case, {}).items():
        monkeypatch.setenv(k, v)
    argv = [out.as_posix() if a == "OUT" else a for a in CASES[case](tmp_path, tiny_model)]
    cache_locks = _cache_locks()
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2, f"{case}: exit {code}\n{err[-2000:]}"
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: not one error line:\n{err[-2000:]}"
    assert NEEDLES.get(case, "") in lines[0]
    assert not _written(out), f"{case}: left {_written(out)}"
    assert "\x1b" not in err + stdout and "\u202e" not in err + stdout, f"{case}: a raw control character was echoed"
    assert not list(tmp_path.rglob(".*.lock")), f"{case}: a lock file was left behind"
    assert _cache_locks() <= cache_locks, f"{case}: a lock file was left in the model cache"


def test_full_disk_is_a_clean_error(tmp_path, tiny_model):
    """A file-size limit makes writes fail with EFBIG (SIGXFSZ ignored), like a full disk."""
    out = tmp_path / "run"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "comptrust", "eval", "--model", str(tiny_model), "--limit", "1",
                        "--out", str(out), "-q"], preexec_fn=limit, env=env, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and len(lines) == 1 and "disk full" in lines[0], r.stderr[-2000:]
    assert not (out / "results.json").exists()


# -- careless inputs that are not errors, or not exit 2 (docs/bad-input.md, second table) --------


def _sub_env(**over: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPTRUST_KILL")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **over)
    return env


def test_repeated_perspectives_flag_is_the_union(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "-p", "stereotype", "-p", "toxicity,stereotype",
                           "--limit", "1", "--out", str(out), "-q")
    assert code == 0, err
    assert sorted(json.loads((out / "results.json").read_text())["dimensions"]) == ["stereotype", "toxicity"]


def test_zero_prompts_with_allow_partial_is_recorded(capsys, tmp_path, tiny_model):
    root = _data(tmp_path, "data/README", "no files")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "-p", "stereotype", "--data-dir", str(root),
                           "--allow-partial", "--out", str(out), "-q")
    assert code == 0, err
    d = json.loads((out / "results.json").read_text())["dimensions"]["stereotype"]
    assert d["score"] is None and d["counts"]["requests"] == 0 and d["provenance"]["partial"] is True


def test_ctrl_c_exits_130_with_the_resume_line(tmp_path, tiny_model):
    """SIGINT mid-generation (what Ctrl-C sends; COMPTRUST_KILL_SIGNAL=INT, docs/testing.md)."""
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "comptrust", "eval", "--model", str(tiny_model), "--limit", "2",
                        "--batch-size", "1", "--out", str(out), "-q"], capture_output=True, text=True, timeout=600,
                       env=_sub_env(COMPTRUST_KILL_AT="generate.batch:2", COMPTRUST_KILL_SIGNAL="INT"))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 130, r.stderr[-2000:]
    assert lines == ["interrupted; re-run the same command to resume (answers so far are saved)"], r.stderr[-2000:]
    assert not (out / "results.json").exists() and not list(out.glob(".*.lock"))


def test_unreachable_hub_is_one_line_without_retries(tmp_path, tiny_model):
    """-p mmlu from the hub on a machine without the hub: one line, no 'Retrying in' lines. The
    endpoint is a closed loopback port, so nothing leaves the machine."""
    env = _sub_env(HF_ENDPOINT="http://127.0.0.1:9")
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(k, None)
    env["HF_DATASETS_CACHE"] = str(tmp_path / "ds-cache")  # cold cache
    r = subprocess.run([sys.executable, "-m", "comptrust", "eval", "--model", str(tiny_model), "-p", "mmlu",
                        "--option", "mmlu_source=hub", "--out", str(tmp_path / "run"), "-q"],
                       capture_output=True, text=True, timeout=600, env=env)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "HF hub is unreachable" in lines[0], r.stderr[-2000:]


def test_terminal_escapes_in_names_are_never_echoed_raw(capsys, tmp_path, tiny_model):
    """ESC sequences in the model dir and --out names: the eval console, report.md and report.html
    show them as visible escapes."""
    model = tmp_path / "tiny\x1b[31mred\x1b]0;title\x07"
    shutil.copytree(tiny_model, model)
    run = tmp_path / "run\x1b[2J"
    code, stdout, err = run_cli(capsys, "eval", "--model", str(model), "--limit", "1", "--out", str(run))
    assert code == 0, err
    assert "\x1b" not in stdout + err and "\\x1b[31m" in stdout + err
    code, stdout, err = run_cli(capsys, "report", str(run), "--out", str(tmp_path / "rep\x1b[1m"), "--n-boot", "10")
    assert code == 0, err
    assert "\x1b" not in stdout + err
    for name in ("report.md", "report.html"):
        text = (tmp_path / "rep\x1b[1m" / name).read_text(encoding="utf-8")
        assert "\x1b" not in text and "\x07" not in text, f"{name} holds a raw control character"
