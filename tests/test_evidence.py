"""Evidence rules on demo-like outputs: the bundled mini set at the demo's size (smoke profile,
12 prompts per dimension), scored by the real perspectives and compared by the real report code.

- no cell is "outside noise" with a zero-width CI (one-request strata used to give [8.0, 8.0]);
- a variant that refuses everything on stereotype gets a score of 100 from the perspective, but
  the cell is refusal-driven and the recommendation never cites it as a gain or a loss;
- every recommendation sentence about a dimension names its evidence (delta, CI or "too few
  samples to tell", n).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from comptrust.data.source import DataSource
from comptrust.perspectives.base import PerspectiveContext, get_perspective
from comptrust.profiles import get_profile
from comptrust.report import CompareOptions, generate_report
from comptrust.results_schema import (
    BackendInfo,
    ComparisonResults,
    CompressionInfo,
    DimensionScore,
    EfficiencyInfo,
    ModelInfo,
    ProfileInfo,
    Provenance,
    RunResults,
    SampleRecord,
    compute_overall,
)
from comptrust.types import Generation

DIMS = ["stereotype", "machine_ethics", "advglue", "ood"]
# answers each perspective's parser reads (plus one refusal), drawn at random per sample
POOLS = {"stereotype": ["I agree.", "I disagree.", "I disagree.", "I'm sorry, I cannot answer that."],
         "machine_ethics": ["wrong", "not wrong", "not wrong", "I cannot say."],
         "advglue": ["yes", "no", "positive", "negative", "maybe"],
         "ood": ["positive", "negative", "yes", "no", "I don't know"]}
REFUSE = "I'm sorry, but I cannot help with that request."


def _answers(dim: str, kind: str, rng: np.random.Generator, n: int) -> tuple[str, ...]:
    if kind == "refuse":
        return (REFUSE,) * n
    return tuple(str(rng.choice(POOLS[dim])) for _ in range(n))


def _write(root: Path, name: str, kind: str, fp: str, policy: dict[str, str], seed: int,
           base_fp: str | None = None, compression: CompressionInfo | None = None) -> Path:
    rng = np.random.default_rng(seed)
    ctx = PerspectiveContext(data=DataSource.bundled(), profile=get_profile("smoke"), seed=0, limit=12)
    d = root / name
    (d / "samples").mkdir(parents=True)
    dims = {}
    for dim in DIMS:
        p = get_perspective(dim)
        reqs = p.requests(ctx)
        gens = []
        for r in reqs:
            if r.choices:  # log-likelihood request: a random preference over the choices
                gens.append(Generation(r, (), "prompt", tuple(float(x) for x in rng.normal(size=len(r.choices)))))
            else:
                gens.append(Generation(r, _answers(dim, policy.get(dim, "random"), rng, r.params.n), "prompt"))
        scores = p.score_many(gens) if hasattr(p, "score_many") else [p.score(g) for g in gens]
        scores = list(scores)
        res = p.aggregate(scores, ctx)
        recs = [SampleRecord.from_score(s, prompt="prompt", texts=list(g.texts)) for s, g in zip(scores, gens)]
        (d / "samples" / f"{dim}.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in recs))
        dims[dim] = DimensionScore.from_result(res)
    rr = RunResults(
        run_id=name, created_at="2025-01-01T00:00:00+00:00",
        model=ModelInfo(ref=f"/m/{name}", display_name=name, fingerprint=fp, kind=kind, base_fingerprint=base_fp,
                        compression=compression, chat_template="tokenizer"),
        backend=BackendInfo(name="hf", device="cpu", dtype="float32"), efficiency=EfficiencyInfo(),
        profile=ProfileInfo(name="smoke", seed=0, limit=12, n_samples=2, gen_seed=0),
        dimensions=dims, overall=compute_overall(dims), provenance=Provenance(), versions={},
    )
    (d / "results.json").write_text(rr.model_dump_json(indent=2))
    return d


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-like")
    runs = [_write(root, "dense", "dense", "fp-d", {}, seed=0)]
    for i, (method, bits, sp) in enumerate([("rtn", 4, None), ("gptq", 3, None), ("magnitude", None, 0.5)]):
        policy = {"stereotype": "refuse"} if method == "magnitude" else {}
        runs.append(_write(root, f"v{i}", "variant", f"fp-v{i}", policy, seed=10 + i, base_fp="fp-d",
                           compression=CompressionInfo(method=method, bits=bits, sparsity=sp, seed=0)))
    files = generate_report([str(r) for r in runs], root / "report", options=CompareOptions(n_boot=300))
    return ComparisonResults.model_validate_json(files.results.read_text()), files


def test_no_outside_noise_cell_has_a_zero_width_ci(demo_like):
    cmp, _ = demo_like
    cells = [(r.label, d, c) for r in cmp.rows if r.role == "variant" for d, c in r.cells.items() if c.delta is not None]
    assert cells
    for label, d, c in cells:
        if c.ci_status == "ci":
            assert c.ci_high - c.ci_low > 1e-6, (label, d, c)
        else:  # no CI: no noise claim either way
            assert c.within_noise is None and c.ci_low is None, (label, d, c)
        if c.within_noise is False:
            assert c.ci_high - c.ci_low > 1e-6
        assert c.delta == c.delta_paired  # the displayed delta is the one the CI is for


def test_all_refusals_is_refusal_driven_and_never_a_gain_or_loss(demo_like):
    cmp, files = demo_like
    mag = next(r for r in cmp.rows if r.label.startswith("Magnitude"))
    c = mag.cells["stereotype"]
    assert c.refusal_rate == pytest.approx(1.0) and c.refusal_driven
    v = next(v for v in cmp.recommendation.verdicts if v.run_id == mag.run_id)
    assert "stereotype" not in [x.dimension for x in v.gains + v.losses + v.inconclusive]
    assert "stereotype" in [x.dimension for x in v.refusal_driven] and not v.keeps_all
    text = "\n".join(cmp.recommendation.paragraphs)
    for sentence in text.split("\n"):
        if "Stereotype" in sentence and mag.label in sentence:
            assert sentence.startswith("Refusal-driven"), sentence
    assert "⊘" in files.markdown.read_text() and 'class="refusal"' in files.html.read_text()


def test_every_dimension_claim_names_its_evidence(demo_like):
    cmp, _ = demo_like
    for p in cmp.recommendation.paragraphs:
        if p.startswith(("Shown to stay", "No loss", "Gains", "Changes of more")) or " loses more than " in p:
            assert re.search(r"Δ [+−]\d+\.\d, (95% CI \[[^\]]+\]|too few samples to tell), n = \d+", p), p


def test_sweep_noise_floor_reruns_dense_with_only_the_generation_seed_changed(tmp_path, tiny_model):
    import json

    from comptrust.plan import expand
    from comptrust.spec import parse_spec
    from comptrust.sweep import prepare, run_sweep

    text = (f"models:\n  - ref: {tiny_model}\n    name: tiny\ndimensions: [stereotype]\nprofile: smoke\nlimit: 2\n"
            "batch_size: 4\nseed: 3\ngen_seed: 5\nnoise_floor: true\n")
    loaded = parse_spec(text, str(tmp_path / "spec.yaml"), tmp_path)
    assert [j.id for j in expand(loaded).jobs] == ["eval/tiny/dense", "eval/tiny/dense-noise-floor"]
    out = tmp_path / "sw"
    res = run_sweep(prepare(loaded, out), report_options=CompareOptions(n_boot=50))
    assert not res.failed
    prof = {t: json.loads((out / f"runs/tiny/{t}/results.json").read_text())["profile"]
            for t in ("dense", "dense-noise-floor")}
    assert (prof["dense"]["seed"], prof["dense"]["gen_seed"]) == (3, 5)
    assert (prof["dense-noise-floor"]["seed"], prof["dense-noise-floor"]["gen_seed"]) == (3, 6)
    cmp = res.comparison
    assert [r.role for r in cmp.rows] == ["baseline", "noise_floor"]
    assert cmp.rows[1].label.endswith("(generation seed 6)")
    assert cmp.rows[1].cells["stereotype"].n_paired > 0  # the same prompts (same --seed), other draws
    # a finished sweep is done, the noise-floor run included
    p = prepare(loaded, out)
    assert set(p.status.values()) == {"done"}
