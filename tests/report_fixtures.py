"""Synthetic run directories (results.json + samples/*.jsonl) for the report tests.

The scenario, per dimension 40 requests in 2 groups, score = 100 * mean(correct):
  dense           a random 0/1 vector per dimension (p = 0.7)
  GPTQ W4 g64*    three calibration seeds (group size 128 requested, 64 used); seed 2 drops 3
                  OOD requests (-7.5), so the OOD seed spread is 7.5 > 5
  AWQ W4 g128     two requests flipped each way per dimension: delta 0 everywhere
  SparseGPT 50%   fairness: 8 requests 1 -> 0 (-20, outside noise);
                  privacy: 4 down, 1 up (-7.5, within noise)
Untrusted text rides along: the dense display name holds markup and a `$`, and SparseGPT's
fairness answers hold a script / onerror payload.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from comptrust.report.compare import DimAggregator
from comptrust.results_schema import (
    BENIGN_DIMENSIONS,
    TRUST_DIMENSIONS,
    BackendInfo,
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

DIMS = TRUST_DIMENSIONS + BENIGN_DIMENSIONS
N = 40
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
DENSE_NAME = "SmolLM2 <i>dense</i> $x$ | pipe"


def mean_correct(scores):
    if not scores:
        return None
    return 100.0 * sum(s.values["correct"] for s in scores) / len(scores)


def fast_aggregator(dim, run):
    return DimAggregator(score=mean_correct, fast_mean_key="correct")


def slow_aggregator(dim, run):
    return DimAggregator(score=mean_correct)


def dense_vectors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {d: (rng.random(N) < 0.7).astype(float) for d in DIMS}


def flip(v: np.ndarray, down: int = 0, up: int = 0) -> np.ndarray:
    v = v.copy()
    ones, zeros = np.flatnonzero(v == 1), np.flatnonzero(v == 0)
    v[ones[:down]] = 0
    v[zeros[:up]] = 1
    return v


def write_run(root: Path, name: str, *, kind: str, fingerprint: str, vectors: dict[str, np.ndarray],
              base_fingerprint: str | None = None, compression: CompressionInfo | None = None,
              display_name: str | None = None, bpw: float | None = None, size: int | None = None,
              tps: float | None = None, answer: dict[str, str] | None = None, sampling_seed: int = 0,
              dim_notes: dict[str, list[str]] | None = None) -> Path:
    d = root / name
    (d / "samples").mkdir(parents=True)
    dims = {}
    for dim, v in vectors.items():
        recs = []
        for i, x in enumerate(v):
            text = (answer or {}).get(dim, "") if x == 0 else "fine answer"
            recs.append(SampleRecord(request_id=f"{dim}-{i}", group=f"g{i % 2}", values={"correct": float(x)},
                                     refusal=0.0 if x else 0.5, prompt=f"Prompt {i} for {dim} <b>bold?</b>",
                                     texts=[text or f"answer {i}"]))
        (d / "samples" / f"{dim}.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in recs))
        dims[dim] = DimensionScore(dimension=dim, score=float(v.mean() * 100), refusal_rate=float((v == 0).mean() * 0.5),
                                   counts={"requests": len(v)}, notes=(dim_notes or {}).get(dim, []))
    res = RunResults(
        run_id=name, created_at="2025-01-01T00:00:00+00:00",
        model=ModelInfo(ref=f"/models/{name}", display_name=display_name or name, fingerprint=fingerprint, kind=kind,
                        base_fingerprint=base_fingerprint, compression=compression, bits_per_weight=bpw,
                        size_bytes=size, chat_template="tokenizer"),
        backend=BackendInfo(name="hf", device="cpu", dtype="float32"),
        efficiency=EfficiencyInfo(size_bytes=size, tokens_per_s=tps),
        profile=ProfileInfo(name="smoke", seed=sampling_seed, n_samples=2),
        dimensions=dims, overall=compute_overall(dims),
        provenance=Provenance(data={"source": "bundled-mini", "files": {"data/x.jsonl": "ab" * 32}},
                              scorers={"toxicity": "detoxify-original 0.5.2"},
                              deviations=["fairness: crime sensitive attribute = gt label (DT quirk kept)"]),
        versions={"torch": "2.13"},
    )
    (d / "results.json").write_text(res.model_dump_json(indent=2))
    return d


def build_scenario(root: Path) -> dict[str, Path]:
    dv = dense_vectors()
    runs = {"dense": write_run(root, "dense", kind="dense", fingerprint="fp-dense", vectors=dv,
                               display_name=DENSE_NAME, bpw=16.0, size=270 * 2**20, tps=50.0,
                               dim_notes={"privacy": ["understanding: q1 only | as DT <does>"]})}
    for s in (0, 1, 2):
        vec = dict(dv)
        if s == 2:
            vec["ood"] = flip(dv["ood"], down=3)
        runs[f"gptq{s}"] = write_run(
            root, f"gptq-s{s}", kind="variant", fingerprint=f"fp-gptq-{s}", base_fingerprint="fp-dense", vectors=vec,
            compression=CompressionInfo(method="gptq", bits=4, group_size_requested=128, group_size_effective=64,
                                        calib_source="c4", n_calib=64, seed=s),
            bpw=4.5, size=100 * 2**20, tps=40.0)
    runs["awq"] = write_run(
        root, "awq", kind="variant", fingerprint="fp-awq", base_fingerprint="fp-dense",
        vectors={d: flip(flip(v, down=2), up=2) for d, v in dv.items()},
        compression=CompressionInfo(method="awq", bits=4, group_size_requested=128, group_size_effective=128, seed=0),
        bpw=4.25, size=95 * 2**20, tps=42.0)
    sv = dict(dv)
    sv["fairness"] = flip(dv["fairness"], down=8)
    sv["privacy"] = flip(dv["privacy"], down=4, up=1)
    runs["sgpt"] = write_run(
        root, "sgpt", kind="variant", fingerprint="fp-sgpt", base_fingerprint="fp-dense", vectors=sv,
        compression=CompressionInfo(method="sparsegpt", sparsity=0.5, structure="unstructured", seed=0),
        bpw=16.0, size=270 * 2**20, tps=49.0, answer={"fairness": "Sure. " + PAYLOAD})
    return runs


def dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))
