"""A sweep end to end on a tiny random model: interrupted between variants, resumed, finished;
nothing rebuilt or regenerated; a finished sweep re-run is a no-op that loads no model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from clihelp import run_cli
from comptrust.report import CompareOptions
from comptrust.spec import parse_spec
from comptrust.sweep import SweepError, SweepEvents, prepare, run_sweep

SPEC = """\
models:
  - ref: {model}
    name: tiny
variants:
  - {{name: rtn4, method: rtn, bits: 4}}
  - {{name: mag, method: magnitude, sparsity: 0.5}}
dimensions: [stereotype]
profile: smoke
limit: {limit}
batch_size: 4
"""
OPTS = CompareOptions(n_boot=50)


class Interrupt(Exception):
    pass


class StopAfter(SweepEvents):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def job_finished(self, job, status, detail=""):
        if job.id == self.job_id and status == "done":
            raise Interrupt(job.id)


@pytest.fixture()
def base(tiny_model) -> Path:
    return tiny_model  # hidden 64 / intermediate 128: RTN's group size falls back from 128 to 64


def _loaded(tmp_path: Path, base: Path, limit: int = 2):
    text = SPEC.format(model=base, limit=limit)
    (tmp_path / "spec.yaml").write_text(text)
    return parse_spec(text, str(tmp_path / "spec.yaml"), tmp_path)


def _rows(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM responses").fetchone()
    finally:
        con.close()


def test_interrupted_sweep_resumes_without_redoing_anything(tmp_path, base, monkeypatch, capsys):
    out = tmp_path / "sw"
    loaded = _loaded(tmp_path, base)
    with pytest.raises(Interrupt):
        run_sweep(prepare(loaded, out), StopAfter("eval/tiny/rtn4"), report_options=OPTS)
    state = json.loads((out / "sweep.json").read_text())
    assert {k: v["status"] for k, v in state["jobs"].items()} == {
        "eval/tiny/dense": "done", "build/tiny/rtn4": "done", "eval/tiny/rtn4": "done",
        "build/tiny/mag": "pending", "eval/tiny/mag": "pending"}
    assert state["spec"]["limit"] == 2 and state["eval_settings"]["dimensions"] == ["stereotype"]
    assert not (out / "variants/tiny/mag").exists() and not (out / "report").exists()
    rtn_manifest = out / "variants/tiny/rtn4/manifest.json"
    mtime = rtn_manifest.stat().st_mtime_ns
    dense_rows = _rows(out / "runs/tiny/dense/store.sqlite")

    # resume: only the missing variant is built and evaluated, then the report is written
    p = prepare(loaded, out)
    assert [k for k, v in p.status.items() if v == "pending"] == ["build/tiny/mag", "eval/tiny/mag"]
    res = run_sweep(p, report_options=OPTS)
    assert res.ran == ["build/tiny/mag", "eval/tiny/mag"] and not res.failed
    assert rtn_manifest.stat().st_mtime_ns == mtime  # not rebuilt
    assert _rows(out / "runs/tiny/dense/store.sqlite") == dense_rows  # nothing regenerated
    for target in ("dense", "rtn4", "mag"):
        total, distinct = _rows(out / f"runs/tiny/{target}/store.sqlite")
        assert total == distinct == 4  # 2 prompts x 2 samples, no duplicates
    assert (out / "report/report.html").is_file()
    cmp = json.loads((out / "report/results.json").read_text())
    assert [r["role"] for r in cmp["rows"]] == ["baseline", "variant", "variant"]
    state = json.loads((out / "sweep.json").read_text())
    assert all(v["status"] == "done" for v in state["jobs"].values())
    assert state["report"]["runs"] == [str(out / f"runs/tiny/{t}") for t in ("dense", "rtn4", "mag")]

    # a finished sweep re-run through the CLI: no build, no model load, no report rewrite
    import comptrust.compress.build as build_mod
    import comptrust.runner as runner_mod

    def boom(*a, **k):
        raise AssertionError("a finished sweep must not build or evaluate anything")

    monkeypatch.setattr(build_mod, "build_variant", boom)
    monkeypatch.setattr(runner_mod, "run_eval", boom)
    monkeypatch.setattr(runner_mod, "build_plan", boom)
    report_mtime = (out / "report/report.html").stat().st_mtime_ns
    code, stdout, err = run_cli(capsys, "sweep", str(tmp_path / "spec.yaml"), "--out", str(out), "--n-boot", "50")
    assert code == 0, err
    assert "(5 done already)" in " ".join(err.split())
    assert (out / "report/report.html").stat().st_mtime_ns == report_mtime
    assert "stereotype" in stdout and "report.html" in stdout
    assert "rtn" in stdout.lower() and "magnitude" in stdout.lower()

    # refused before anything is touched: other eval settings (other prompts: not comparable) ...
    before = (out / "sweep.json").read_text()
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(model=base, limit=3))
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(out))
    assert code == 2 and "other eval settings (limit: 2 there, 3 in" in err
    # ... the same variant name with another recipe ...
    spec.write_text(SPEC.format(model=base, limit=2).replace("bits: 4", "bits: 8"))
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(out))
    assert code == 2 and "holds another variant" in err and "rtn4" in err
    assert (out / "sweep.json").read_text() == before
    # ... and a directory that is not a sweep
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    with pytest.raises(SweepError, match="holds no sweep.json"):
        prepare(loaded, tmp_path / "junk")


def test_failed_build_blocks_only_its_eval(tmp_path, base, monkeypatch):
    from comptrust.errors import CompressionError
    import comptrust.compress.build as build_mod

    real = build_mod.build_variant

    def flaky(spec, *a, **k):
        if spec.method == "rtn":
            raise CompressionError("simulated failure")
        return real(spec, *a, **k)

    monkeypatch.setattr(build_mod, "build_variant", flaky)
    out = tmp_path / "sw"
    res = run_sweep(prepare(_loaded(tmp_path, base, limit=1), out), report_options=OPTS)
    assert res.failed == ["build/tiny/rtn4"]
    jobs = json.loads((out / "sweep.json").read_text())["jobs"]
    assert jobs["eval/tiny/rtn4"]["status"] == "blocked"
    assert jobs["build/tiny/rtn4"]["error"] == "simulated failure"
    assert jobs["eval/tiny/mag"]["status"] == "done"
    assert (out / "report/report.html").is_file()  # what finished is still reported
