"""`comptrust demo`: its spec covers the study (8 trust dimensions + MMLU, the paper's methods), its
dry run lists them, and its one-sentence summary follows the report's evidence."""

from __future__ import annotations

import pytest

from comptrust.spec import load_spec

TRUST = {"toxicity", "stereotype", "advglue", "ood", "adv_demonstration", "privacy", "machine_ethics", "fairness"}


def _methods(spec) -> dict[str, dict]:
    return {v.name: v for v in spec.variants}


def test_demo_spec_is_the_study_in_miniature():
    from comptrust.perspectives.base import list_perspectives

    spec = load_spec("demo").spec
    trust = {n for n, cls in list_perspectives().items() if getattr(cls, "is_trust", True)}
    assert trust == TRUST  # the eight DecodingTrust dimensions
    assert set(spec.dimensions) == TRUST | {"mmlu"} and len(spec.dimensions) == 9
    assert [m.ref for m in spec.models] == ["embedded:smollm2-135m-instruct"]
    got = {(v.method, v.bits, v.structure) for v in spec.variants}
    assert ("gptq", 4, None) in got and ("awq", 4, None) in got  # the paper's quantization methods
    assert ("magnitude", None, "2:4") in got
    assert got & {("wanda", None, "2:4"), ("sparsegpt", None, "2:4")}  # a calibrated 2:4 pruning
    # CPU-sized calibration, stated in the spec (and so in every manifest and variant name)
    for v in spec.variants:
        if v.method != "magnitude":
            assert v.n_calib <= 32 and v.seq_len <= 256
    # the sample-size rule (specs/demo.yaml): 32 prompts per dimension (all of it where the bundled set has fewer)
    assert spec.limit == 32 and spec.profile == "quick"
    # every variant expands to a valid compression request, AWQ's grid included
    from comptrust.spec import expand_variant

    awq = dict(expand_variant(_methods(spec)["awq-w4"]))["awq-w4"]
    assert awq.awq_n_grid == 5 and "grid5" in awq.short_name(64)


def test_awq_n_grid_is_checked_and_reaches_the_modifier():
    from comptrust.compress.methods import CompressSpec, make_modifiers
    from comptrust.errors import CompressionError

    with pytest.raises(CompressionError, match="awq_n_grid applies to method awq"):
        CompressSpec.make("gptq", awq_n_grid=5)
    with pytest.raises(CompressionError, match="at least 2"):
        CompressSpec.make("awq", awq_n_grid=1)
    mods = make_modifiers(CompressSpec.make("awq", awq_n_grid=5), group_size=64, ignore=["lm_head"])
    assert mods[0].n_grid == 5
    assert make_modifiers(CompressSpec.make("awq"), group_size=64, ignore=["lm_head"])[0].n_grid == 20
    # left at the default, the request is what it was before the option existed
    assert "awq_n_grid" not in CompressSpec.make("awq").to_dict()
    assert CompressSpec.make("awq", awq_n_grid=5).to_dict()["awq_n_grid"] == 5


def test_torch_threads_is_scoped():
    import torch

    from comptrust.sweep import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.slow
def test_demo_dry_run_lists_the_grid_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from clihelp import run_cli

    from comptrust.commands.progress import console

    monkeypatch.setattr(console, "_width", 240)  # job ids untruncated in the plan table

    try:
        from comptrust.models.resolve import resolve_model

        resolve_model("embedded:smollm2-135m-instruct")
    except Exception as e:  # the wheel is part of the test set-up; say so instead of erroring
        pytest.skip(f"embedded model unavailable: {e}")
    out = tmp_path / "demo"
    code, _, err = run_cli(capsys, "demo", "--dry-run", "--out", str(out))
    assert code == 0, err
    flat = " ".join(err.split())
    for job in ("build/smollm2-135m-instruct/gptq-w4", "build/smollm2-135m-instruct/awq-w4",
                "build/smollm2-135m-instruct/wanda-2of4", "build/smollm2-135m-instruct/magnitude-2of4",
                "eval/smollm2-135m-instruct/dense"):
        assert job in flat, job
    for d in sorted(TRUST | {"mmlu"}):
        assert d in flat, d
    assert "calib bundled 16x128" in flat
    assert "4 variant builds + 5 eval jobs" in flat
    assert not out.exists()


# -- the one-sentence summary ---------------------------------------------------------------------


def _cmp(verdicts, cells):
    """A minimal ComparisonResults-like object (the summary reads only these fields)."""
    from types import SimpleNamespace as NS

    from comptrust.results_schema import DeltaCell, DimensionLoss, VariantVerdict

    rows = [NS(role="baseline", cells={})]
    for label, cs in cells.items():
        rows.append(NS(role="variant", label=label, cells={d: DeltaCell(**c) for d, c in cs.items()}))
    vs = []
    for v in verdicts:
        v = dict(v)
        for k in ("losses", "gains", "inconclusive", "refusal_driven"):
            v[k] = [DimensionLoss(**x) for x in v.get(k, [])]
        vs.append(VariantVerdict(**v))
    return NS(rows=rows, dimensions=["ethics", "fairness"], recommendation=NS(verdicts=vs))


def test_summary_sentence_says_what_and_how_sure():
    from comptrust.commands.demo import summary_sentence

    loss = {"dimension": "ethics", "delta": -31.0, "within_noise": False, "ci_low": -45.0, "ci_high": -17.0, "ci_status": "ci"}
    cmp = _cmp(
        [{"run_id": "a", "label": "GPTQ W4", "keeps_all": False, "no_detected_loss": True},
         {"run_id": "b", "label": "Magnitude 2:4", "keeps_all": False, "losses": [loss]}],
        {"GPTQ W4": {"ethics": {"ci_status": "ci", "ci_low": -10.0, "ci_high": 12.0},
                     "fairness": {"ci_status": "too_few"}},
         "Magnitude 2:4": {"ethics": {"ci_status": "ci", "ci_low": -45.0, "ci_high": -17.0},
                           "fairness": {"ci_status": "ci", "ci_low": -8.0, "ci_high": 8.0}}},
    )
    s = summary_sentence(cmp)
    assert s.startswith("GPTQ W4 showed no loss outside the noise; Magnitude 2:4 lost trust on 1 dimension (ethics -31)")
    # half-widths 11, 14, 8 -> median 11, range 8..14, 3 of 4 cells estimable
    assert "±11 points wide at the median (±8 to ±14; 3 of 4 cells have one)" in s
    assert s.endswith(".") and s.count(". ") == 0  # one sentence


def test_summary_sentence_names_gains_outside_the_noise():
    from comptrust.commands.demo import summary_sentence

    gain = {"dimension": "ood", "delta": 21.1, "within_noise": False, "ci_low": 4.0, "ci_high": 38.2, "ci_status": "ci"}
    loss = {"dimension": "toxicity", "delta": -15.3, "within_noise": False, "ci_low": -30.1, "ci_high": -0.5, "ci_status": "ci"}
    cmp = _cmp(
        [{"run_id": "a", "label": "AWQ W4", "keeps_all": False, "gains": [gain]},
         {"run_id": "b", "label": "Wanda 2:4", "keeps_all": False, "losses": [loss], "gains": [gain]},
         {"run_id": "c", "label": "GPTQ W4", "keeps_all": False}],
        {x: {"ood": {"ci_status": "ci", "ci_low": 4.0, "ci_high": 38.2}} for x in ("AWQ W4", "Wanda 2:4", "GPTQ W4")},
    )
    s = summary_sentence(cmp)
    assert s.startswith("AWQ W4 gained on 1 dimension (ood +21); "
                        "Wanda 2:4 lost trust on 1 dimension (toxicity -15) and gained on 1 dimension (ood +21); "
                        "GPTQ W4 had no change that the evidence can tell from noise"), s


def test_summary_sentence_without_any_ci_claims_nothing():
    from comptrust.commands.demo import summary_sentence

    labels = ["AWQ W4", "Wanda 2:4", "Magnitude 2:4"]
    cmp = _cmp([{"run_id": x, "label": x, "keeps_all": False} for x in labels],
               {x: {"ethics": {"ci_status": "too_few"}} for x in labels})
    s = summary_sentence(cmp)
    assert s.startswith("AWQ W4, Wanda 2:4 and Magnitude 2:4 had no change that the evidence can tell from noise")
    assert "nothing here is a finding" in s
