"""A finished eval re-run with the same inputs is answered from its results.json without
rebuilding the plan; any change of config, data, model or code goes the normal way."""

import json
import os
import subprocess
import sys
from pathlib import Path

from comptrust.pipeline.build import EvalConfig
from comptrust.pipeline.uptodate import INPUTS_FILE, finished_results, inputs_digest


def _cmd(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "comptrust", "eval", "--model", str(model), "--perspectives", "machine_ethics",
            "--profile", "smoke", "--limit", "4", "--out", str(out), *extra]


def test_rerun_of_a_finished_eval_is_answered_from_its_results(tiny_model, tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(_cmd(tiny_model, out), capture_output=True, text=True, check=True)
    assert "up to date" not in first.stdout + first.stderr and (out / INPUTS_FILE).is_file()
    before = (out / "results.json").read_bytes()
    # -X importtime lists every module the process imported (on stderr, where the console writes too)
    again = subprocess.run([sys.executable, "-X", "importtime", *_cmd(tiny_model, out)[1:]],
                           capture_output=True, text=True, check=True)
    assert "up to date" in again.stderr and "score" in again.stderr  # the dimension lines are still printed
    assert (out / "results.json").read_bytes() == before
    imported = {line.rsplit("|", 1)[-1].strip() for line in again.stderr.splitlines() if line.startswith("import time:")}
    assert "comptrust.pipeline.uptodate" in imported
    assert "transformers" not in imported  # no tokenizer, no model: the plan was not rebuilt
    # another generation seed is another eval: the normal path (and a new stamp)
    other = subprocess.run(_cmd(tiny_model, out, "--gen-seed", "1"), capture_output=True, text=True, check=True)
    assert "up to date" not in other.stdout + other.stderr
    assert json.loads((out / "results.json").read_text())["profile"]["gen_seed"] == 1


def test_digest_follows_config_data_and_model(tiny_model, tmp_path):
    data = tmp_path / "dt" / "data" / "machine_ethics"
    data.mkdir(parents=True)
    (data / "rows.csv").write_text("a,b\n1,2\n")
    cfg = EvalConfig(model=str(tiny_model), perspectives=["machine_ethics"], out_dir=tmp_path / "o", data_dir=str(tmp_path / "dt"))
    d0 = inputs_digest(cfg)
    assert d0 is not None and d0 == inputs_digest(cfg.replace(out_dir=tmp_path / "elsewhere"))  # the run dir is not an input
    assert inputs_digest(cfg.replace(limit=3)) != d0
    assert inputs_digest(cfg.replace(options={"ethics_refusal_policy": "excluded"})) != d0
    (data / "rows.csv").write_text("a,b\n1,3\n")
    os.utime(data / "rows.csv", ns=(1, 1))
    assert inputs_digest(cfg) != d0  # a data file changed
    assert inputs_digest(cfg.replace(data_dir="hub")) is None  # hub data cannot be stamped locally
    # no stamp, or a stamp of other inputs: no shortcut
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert finished_results(cfg) is None
    (out / INPUTS_FILE).write_text(json.dumps({"digest": d0}))
    assert finished_results(cfg) is None
    (out / INPUTS_FILE).write_text(json.dumps({"digest": inputs_digest(cfg)}))
    assert finished_results(cfg) == {}
