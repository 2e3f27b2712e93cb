"""Two processes at once: two evals into one run directory finish without corruption or a
surfaced "database is locked"; two builds of one variant directory build it once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "comptrust", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(p: subprocess.Popen) -> tuple[int, str]:
    out, err = p.communicate(timeout=600)
    return p.returncode, out + err


def test_two_evals_into_one_run_dir(tmp_path, tiny_model):
    run = tmp_path / "run"
    args = ("eval", "--model", str(tiny_model), "-p", "stereotype", "--limit", "3", "--batch-size", "1",
            "--out", str(run), "-q")
    procs = [_start(*args), _start(*args)]
    results = [_wait(p) for p in procs]
    for code, log in results:
        assert code == 0, log[-2000:]
        assert "locked" not in log.lower()
    con = sqlite3.connect(run / "store.sqlite")
    try:
        n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM responses").fetchone()
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert n == distinct == 3 * 2  # 3 prompts x 2 samples, each stored once
    res = json.loads((run / "results.json").read_text())
    assert res["dimensions"]["stereotype"]["counts"]["samples"] == 6
    lines = (run / "samples" / "stereotype.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    assert not [p for p in run.rglob(".*tmp*")], "a temp file was left behind"


def test_two_builds_of_one_variant_build_it_once(tmp_path, tiny_model):
    out = tmp_path / "variants" / "mag"
    out.parent.mkdir()
    args = ("compress", "--model", str(tiny_model), "--method", "magnitude", "--sparsity", "0.5", "--out", str(out))
    procs = [_start(*args), _start(*args)]
    results = [_wait(p) for p in procs]
    for code, log in results:
        assert code == 0, log[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "magnitude"
    assert not list(out.parent.glob(".*building*"))
    # exactly one of the two compressed; the other waited and reused its variant
    reused = [log for _, log in results if "already holds this variant" in log or "nothing to do" in log]
    assert len(reused) == 1, [log[-500:] for _, log in results]
