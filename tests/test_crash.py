"""Crash test: a sweep SIGKILLed at 11 named points (COMPTRUST_KILL_AT, see docs/testing.md) and
resumed each time ends with exactly the answers and the report of an uninterrupted sweep.

One sweep directory is shared by the cycles (kill at point 1, resume until point 2 kills, ...),
so every kill lands on a directory that earlier kills already damaged. After each kill: no
answer committed before is lost, no key is stored twice, no variant dir without its manifest,
no report.html / results.json from a killed report write.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = """\
models:
  - ref: {model}
    name: tiny
variants:
  - {{name: rtn4, method: rtn, bits: 4}}
  - {{name: mag, method: magnitude, sparsity: 0.5}}
dimensions: [stereotype]
profile: smoke
limit: 1
batch_size: 1
"""

# In plan order: eval dense, build rtn4, eval rtn4, build mag, eval mag, report. Each cycle's
# process starts its counters at 0, so ':n' counts within one resumed process.
KILL_POINTS = [
    "generate.batch:2",     # mid-generation: the first sample is committed, the second is not
    "store.commit:1",       # rows inserted, COMMIT not reached
    "score:1",              # every answer stored, scoring
    "atomic.rename:1",      # samples/<dim>.jsonl temp written, not renamed
    "results.write:1",      # run results.json about to be written
    "compress.start:1",     # variant rtn4: base loaded, compression starting
    "compress.saved:1",     # checkpoint saved in the temp dir, no manifest
    "compress.manifest:1",  # complete in the temp dir, not renamed into place
    "generate.batch:1",     # rtn4 eval: first batch generated, not committed
    "report.write:2",       # report: two of three temp files written
    "report.rename:1",      # report: report.md renamed, html and results.json not
]

VOLATILE = {"created_at", "written_at", "tokens_per_s", "peak_load_mem_bytes", "load_seconds", "seconds"}


def _cli(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COMPTRUST_KILL_AT"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    if kill_at:
        env["COMPTRUST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "comptrust", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _answers(sw: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for db in sorted(sw.glob("runs/*/*/store.sqlite")):
        con = sqlite3.connect(db)
        try:
            rows = con.execute("SELECT key, text FROM responses").fetchall()
            n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM responses").fetchone()
        finally:
            con.close()
        assert n == distinct, f"duplicate answers in {db}"
        for k, t in rows:
            assert k not in out, f"answer {k} stored in two run dirs"
            out[k] = t
    return out


def _normalise(x, sw: Path):
    if isinstance(x, dict):
        return {k: _normalise(v, sw) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_normalise(v, sw) for v in x]
    if isinstance(x, str):
        return x.replace(str(sw), "<SWEEP>")
    return x


def _fill_unloaded_backends(got, ref):
    """A resumed run whose answers all came from the store loaded no model, so its backend record
    honestly says device/dtype null; everywhere else the resumed report must equal the reference."""
    if isinstance(got, dict) and isinstance(ref, dict):
        if set(got) >= {"name", "device", "dtype"} and got["device"] is None and got["dtype"] is None \
                and got["name"] == ref.get("name"):
            return {**got, "device": ref.get("device"), "dtype": ref.get("dtype")}
        return {k: _fill_unloaded_backends(v, ref.get(k)) for k, v in got.items()}
    if isinstance(got, list) and isinstance(ref, list) and len(got) == len(ref):
        return [_fill_unloaded_backends(g, r) for g, r in zip(got, ref)]
    return got


def _report_json(sw: Path) -> dict:
    return _normalise(json.loads((sw / "report" / "results.json").read_text()), sw)


def _check_no_half_state(sw: Path) -> None:
    for vdir in sw.glob("variants/*/*"):
        if not vdir.name.startswith("."):
            assert (vdir / "manifest.json").is_file(), f"{vdir} is in place without a manifest"
    rep = sw / "report"
    assert not (rep / "report.html").exists() and not (rep / "results.json").exists(), \
        "a report from a killed sweep looks finished"
    for run in sw.glob("runs/*/*"):
        res = run / "results.json"
        if res.exists():  # a run's results.json is whole and valid whenever it is there
            json.loads(res.read_text())


def test_sweep_survives_sigkill_at_every_point(tmp_path):
    from comptrust.testing import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny", hidden_size=192, intermediate_size=384)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(model=model))
    ref, sw = tmp_path / "ref", tmp_path / "sw"

    r = _cli(["sweep", str(spec), "--out", str(ref), "--n-boot", "10"])
    assert r.returncode == 0, r.stderr[-2000:]
    ref_answers, ref_report = _answers(ref), _report_json(ref)
    assert len(ref_answers) == 3 * 1 * 2  # 3 models x 1 prompt x 2 samples

    before: dict[str, str] = {}
    for point in KILL_POINTS:
        r = _cli(["sweep", str(spec), "--out", str(sw), "--n-boot", "10"], kill_at=point)
        assert r.returncode == -signal.SIGKILL, f"{point} was never reached (rc {r.returncode}): {r.stderr[-1500:]}"
        now = _answers(sw)
        lost = {k for k in before if now.get(k) != before[k]}
        assert not lost, f"kill at {point} lost or changed {len(lost)} committed answers"
        before = now
        _check_no_half_state(sw)
    # the store kept the first batch across the mid-commit kill; the kill lost only the batch in flight
    r = _cli(["sweep", str(spec), "--out", str(sw), "--n-boot", "10"])
    assert r.returncode == 0, r.stderr[-2000:]
    final = _answers(sw)
    assert set(final) == set(ref_answers), "answers lost or extra after the resumes"
    assert final == ref_answers, "a resumed generation gave other texts than the uninterrupted one"
    assert _fill_unloaded_backends(_report_json(sw), ref_report) == ref_report
    assert not list(sw.glob("variants/*/.*.building-*")), "a killed build's temp dir was left behind"
    assert not list((sw / "report").glob(".*.tmp*")), "temp files of the killed report write were left behind"
    state = json.loads((sw / "sweep.json").read_text())
    assert {v["status"] for v in state["jobs"].values()} == {"done"}


def _eval_start(model: Path, out: Path, dim: str, kill_at: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "COMPTRUST_KILL_AT"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    if kill_at:
        env["COMPTRUST_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "comptrust", "eval", "--model", str(model), "-p", dim, "--limit", "2",
                             "--batch-size", "1", "--out", str(out), "-q"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _pair(model: Path, out: Path, kills: dict[str, str | None]) -> None:
    # a finished eval's stamp would answer a re-run from results.json (pipeline/uptodate.py) and
    # never reach the merge this test kills in: every run here takes the normal path
    (out / "inputs.json").unlink(missing_ok=True)
    procs = {d: _eval_start(model, out, d, k) for d, k in kills.items()}
    for d, p in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == (-signal.SIGKILL if kills[d] else 0), f"{d} at {kills[d]}: rc {p.returncode}\n{err[-1500:]}"


def _dims(run: Path) -> dict:
    return _normalise(json.loads((run / "results.json").read_text())["dimensions"], run)


def test_sigkill_during_the_results_merge_of_two_concurrent_evals(tmp_path, tiny_model):
    """Two evals of different dimensions into one --out; one (or both) SIGKILLed inside the
    read-merge-write of results.json. The other's dimension is never lost, the document is always
    whole, and re-runs end with what two uninterrupted evals write."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    _pair(tiny_model, ref, {"stereotype": None})
    _pair(tiny_model, ref, {"toxicity": None})

    # stereotype dies holding the lock, mid-merge; toxicity (waiting or not) gets it and lands
    _pair(tiny_model, run, {"stereotype": "results.merge:1", "toxicity": None})
    assert set(_dims(run)) == {"toxicity"}
    # now toxicity dies mid-merge while stereotype lands: the toxicity already there survives
    _pair(tiny_model, run, {"stereotype": None, "toxicity": "results.merge:1"})
    assert set(_dims(run)) == {"stereotype", "toxicity"}
    # both die just before replacing results.json: the document is whole and still holds both
    _pair(tiny_model, run, {"stereotype": "results.write:1", "toxicity": "results.write:1"})
    assert set(_dims(run)) == {"stereotype", "toxicity"}
    _pair(tiny_model, run, {"stereotype": None, "toxicity": None})
    assert _dims(run) == _dims(ref)
    assert not list(run.rglob(".*tmp*")) and not list(run.glob(".*.lock")), "a killed writer's files were left"
