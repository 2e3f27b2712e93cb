"""results.json fields mean what they say: peak memory is a peak, no invented backend record,
deviations are the effective non-default switches only."""

from __future__ import annotations

import json
import subprocess
import sys

from clihelp import run_cli


def test_peak_memory_is_a_peak_not_what_is_left():
    """Measured in a fresh interpreter, so only this allocation is in it: in the suite's own
    process the same check read 0 twice in full CI runs (it passes alone and after the
    neighbouring files; the cause is not pinned down)."""
    code = """
import numpy as np
from comptrust.peakmem import PeakMemory
m = PeakMemory.start()
if not m.resettable:
    assert m.peak_added() is None  # not measurable here: said, not guessed
else:
    a = np.ones(30_000_000)  # 240 MB, touched
    del a  # gone again before the measurement
    assert m.peak_added() >= 200_000_000, m.peak_added()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_cached_rerun_and_deviations(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    args = ["eval", "--model", str(tiny_model), "-p", "stereotype", "--limit", "2", "--out", str(out),
            "--option", "stereotype_round=false", "--quiet"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    first = json.loads((out / "results.json").read_text())
    assert first["backend"]["device"] and first["backend"]["dtype"]  # a model was loaded and ran
    peak = first["efficiency"]["peak_load_mem_bytes"]
    assert peak is None or peak > 0
    # only the switch set away from the protocol's value / default, once; no perspective notes
    assert first["provenance"]["deviations"] == ["stereotype: stereotype_round=False"]

    (out / "results.json").unlink()  # no earlier record: every answer now comes from the store
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    again = json.loads((out / "results.json").read_text())
    assert again["backend"] == {"name": "hf", "device": None, "dtype": None}  # not an invented cpu/float32
    assert again["efficiency"]["peak_load_mem_bytes"] is None and again["efficiency"]["tokens_per_s"] is None
    assert again["dimensions"]["stereotype"]["score"] == first["dimensions"]["stereotype"]["score"]

    rep = tmp_path / "rep"
    code, _, err = run_cli(capsys, "report", str(out), "--out", str(rep), "--n-boot", "20")
    assert code == 0, err
    md = (rep / "report.md").read_text()
    assert md.count("stereotype\\_round=False") == 1  # Markdown-escaped
    lines = [ln for ln in md.splitlines() if ln.startswith("- ") and len(ln) > 20]
    assert len(lines) == len(set(lines)), "a note printed twice"



def test_report_reaggregates_with_the_runs_effective_options():
    """The paper preset sets fairness_unknown_policy=zero and fairness_headline=dpd_eod; results.json
    records them under protocol.switches (user --options under options). The report's
    re-aggregation must use them, or it recomputes another score than the run's."""
    from types import SimpleNamespace

    from comptrust.data.source import DataSource
    from comptrust.perspectives.base import PerspectiveContext, get_perspective
    from comptrust.profiles import get_profile
    from comptrust.report.compare import registry_aggregator
    from comptrust.types import Generation

    ctx = PerspectiveContext(DataSource.bundled(), get_profile("full"))
    paper = {"fairness_unknown_policy": "zero", "fairness_headline": "dpd_eod"}
    P = get_perspective("fairness", paper)
    reqs = P.requests(ctx)
    answers = ["yes", "no", "I cannot tell", "no", "yes", "yes", "maybe"]
    scores = [P.score(Generation(r, (answers[i % len(answers)],))) for i, r in enumerate(reqs)]
    run_score = P.aggregate(scores, ctx).score
    assert get_perspective("fairness").aggregate(scores, ctx).score != run_score  # the switches matter here

    results = SimpleNamespace(
        dimensions={"fairness": SimpleNamespace(provenance=SimpleNamespace(options={}))},
        options={}, profile=SimpleNamespace(name="full", seed=0),
        protocol=SimpleNamespace(name="paper", switches={**paper, "chat_rendering": "dt-fastchat"}))
    agg = registry_aggregator("fairness", SimpleNamespace(results=results))
    assert agg.score(scores) == run_score
