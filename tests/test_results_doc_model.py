"""results.json is built as the schema's models (results_schema.RunResults and its sub-models) and
written as json.dumps(indent=2) of their JSON-mode dump: the bytes it always had."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from comptrust.runner import EvalConfig


def test_results_json_bytes_and_validation(tmp_path, tiny_model):
    """results.json is json.dumps(indent=2) of the model's JSON-mode dump (model_dump_json would
    write 1e-05 as 0.00001); a document that fails the schema is not written."""
    from comptrust.results_doc import _results_doc, update_results
    from comptrust.results_schema import RunResults
    from comptrust.runner import run_eval

    cfg = EvalConfig(model=str(tiny_model), perspectives=["stereotype"], out_dir=tmp_path / "run", limit=1)
    doc = run_eval(cfg)
    path = cfg.out_dir / "results.json"
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == doc and text == json.dumps(doc, indent=2, ensure_ascii=False)

    def tiny_subscore(d: dict) -> dict:
        d["dimensions"]["stereotype"]["subscores"]["tiny"] = 1e-05
        d["dimensions"]["stereotype"]["notes"].append("naïve")  # written as is, not \u-escaped
        return d

    update_results(cfg.out_dir, tiny_subscore)
    text = path.read_text(encoding="utf-8")
    assert '"tiny": 1e-05' in text and '"naïve"' in text

    def drift(d: dict) -> dict:
        d["dimensions"]["stereotype"]["scroe"] = 1.0
        return d

    with pytest.raises(ValidationError):
        update_results(cfg.out_dir, drift)
    assert path.read_text(encoding="utf-8") == text

    from comptrust.runner import build_plan

    plan = build_plan(cfg)
    built = _results_doc(cfg, plan, json.loads(text)["dimensions"], {}, json.loads(text), {})
    assert isinstance(built, RunResults) and built.overall.dimensions_used == ["stereotype"]
    assert built.backend.name == "hf" and built.model.fingerprint == plan.resolved.fingerprint
