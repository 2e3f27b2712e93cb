"""The plan's time estimate uses this machine's measured throughput: a short calibration on
first use, cached per (model, machine), read back instantly afterwards."""

import json

from clihelp import run_cli

SPEC = """\
models:
  - ref: {model}
    name: tiny
dimensions: [stereotype]
profile: smoke
limit: 2
"""


def test_first_plan_calibrates_then_reads_the_cache(tmp_path, tiny_model, capsys, monkeypatch):
    cache = tmp_path / "cal.json"
    monkeypatch.delenv("COMPTRUST_NO_CALIBRATION", raising=False)
    monkeypatch.setenv("COMPTRUST_THROUGHPUT_CALIBRATION", str(cache))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(model=tiny_model))
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run")
    assert code == 0, err
    flat = " ".join(err.split())
    assert "measuring this machine's generation throughput once" in flat
    assert "calibrated on this machine" in flat
    (rec,) = json.loads(cache.read_text()).values()
    assert rec["tokens_per_s"] > 0 and rec["samples"] >= 8 and rec["engine"] == "reuse"
    assert f"throughput {rec['tokens_per_s']:g} tok/s" in flat  # the estimate uses the measured figure

    # second plan: read from the cache, nothing measured
    import comptrust.calibrate as cal

    def boom(*a, **k):
        raise AssertionError("calibrated twice")

    monkeypatch.setattr(cal, "measure", boom)
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run")
    assert code == 0, err
    flat = " ".join(err.split())
    assert "measuring" not in flat and f"throughput {rec['tokens_per_s']:g} tok/s" in flat


def test_calibration_failure_falls_back_to_the_default(tmp_path, tiny_model, monkeypatch):
    from comptrust.calibrate import calibrated_throughput
    from comptrust.models.resolve import resolve_model

    monkeypatch.delenv("COMPTRUST_NO_CALIBRATION", raising=False)
    monkeypatch.setenv("COMPTRUST_THROUGHPUT_CALIBRATION", str(tmp_path / "cal.json"))
    said = []

    def broken(resolved, device):
        raise RuntimeError("no memory")

    assert calibrated_throughput(resolve_model(str(tiny_model)), "cpu", log=said.append, run=broken) is None
    assert "calibration failed" in said[-1] and not (tmp_path / "cal.json").exists()
