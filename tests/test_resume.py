"""A run killed with SIGKILL mid-generation resumes with no losses, no duplicates and the same
results as an uninterrupted run."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from clihelp import response_count


def _cmd(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "comptrust", "eval", "--model", str(model), "--perspectives", "stereotype",
            "--profile", "smoke", "--batch-size", "1", "--out", str(out), "--quiet"]


def _comparable(run: Path) -> tuple:
    res = json.loads((run / "results.json").read_text())
    for d in res["dimensions"].values():
        d["provenance"].pop("created_at")  # when it was scored, which differs between the two runs
    samples = [json.loads(l) for l in (run / "samples" / "stereotype.jsonl").read_text().splitlines()]
    return res["dimensions"], samples


def test_sigkill_then_resume(tiny_model, tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(_cmd(tiny_model, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "store.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and response_count(db) < 8:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = response_count(db)
    assert partial >= 8
    assert not (killed / "results.json").exists()  # nothing claims to be finished

    subprocess.run(_cmd(tiny_model, killed), check=True, capture_output=True)
    subprocess.run(_cmd(tiny_model, clean), check=True, capture_output=True)

    con = sqlite3.connect(db)
    total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT request_id || '/' || sample_idx) FROM responses").fetchone()
    con.close()
    assert total == distinct == response_count(clean / "store.sqlite") > partial  # no duplicates, no losses
    assert _comparable(killed) == _comparable(clean)

    # a finished run re-run is answered from its results (pipeline/uptodate.py) and generates nothing
    before = (killed / "results.json").read_bytes()
    r = subprocess.run(_cmd(tiny_model, killed)[:-1], capture_output=True, text=True, check=True)
    assert "up to date" in r.stderr
    assert response_count(db) == total and (killed / "results.json").read_bytes() == before
    # without its inputs stamp it goes the normal way: the store answers every request
    (killed / "inputs.json").unlink()
    r = subprocess.run(_cmd(tiny_model, killed)[:-1], capture_output=True, text=True, check=True)
    assert "0 to generate" in r.stderr and response_count(db) == total
