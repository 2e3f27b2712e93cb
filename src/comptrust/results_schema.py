"""The on-disk schemas: one run directory's `results.json` and `samples/<dimension>.jsonl`, and
the comparison `results.json` written by `comptrust report` / `comptrust compare`.

A run directory holds one model (dense or a compressed variant) evaluated on some dimensions:

    RUN_DIR/results.json              RunResults (this module, SCHEMA_VERSION)
    RUN_DIR/samples/<dimension>.jsonl one SampleRecord per request (feeds the paired bootstrap)

All models forbid unknown fields so that a writer bug (a misspelt key) fails loudly instead of
being silently dropped; `extra` dicts are the place for perspective-specific additions.
`docs/results-schema.md` is generated from these models: `python -m comptrust.results_schema
> docs/results-schema.md` (tests/test_report.py checks it is up to date).
"""

from __future__ import annotations

import json
import sys
import types
import typing
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import __version__
from .types import DimensionResult, SampleScore

SCHEMA_VERSION = "1.0"
SUPPORTED_SCHEMA_VERSIONS = ("1.0",)
COMPARISON_SCHEMA_VERSION = "1.0"


def __getattr__(name: str) -> Any:
    """TRUST_DIMENSIONS, BENIGN_DIMENSIONS and DIMENSION_TITLES come from the one dimension
    catalogue (perspectives/registry.py, built from the installed perspectives); they stay
    importable from here for readers of results."""
    from .perspectives import registry

    if name == "TRUST_DIMENSIONS":
        return registry.trust_dimensions()
    if name == "BENIGN_DIMENSIONS":
        return registry.benign_dimensions()
    if name == "DIMENSION_TITLES":
        return {d.name: d.short_title for d in registry.catalogue()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- run results


class CompressionInfo(_Strict):
    """How a variant was made from its base model (mirrors the variant's manifest.json)."""

    method: str = Field(description="gptq, awq, sparsegpt, wanda, magnitude, rtn, ...")
    bits: int | None = Field(None, description="weight bits for quantization; None for pruning only")
    sparsity: float | None = Field(None, description="fraction of pruned weights (0-1), measured from the saved weights")
    structure: str | None = Field(None, description="'unstructured' or 'N:M' (e.g. '2:4') for pruning")
    group_size_requested: int | None = Field(None, description="quantization group size asked for")
    group_size_effective: int | None = Field(None, description="group size used (largest divisor of the layer width <= requested)")
    calib_source: str | None = Field(None, description="calibration data set")
    calib_hash: str | None = Field(None, description="hash of the calibration token ids")
    n_calib: int | None = Field(None, description="number of calibration samples")
    seq_len: int | None = Field(None, description="calibration sequence length")
    seed: int | None = Field(None, description="calibration seed")


class ModelInfo(_Strict):
    ref: str = Field(description="what the user passed (HF id, local dir, variant dir)")
    display_name: str
    fingerprint: str = Field(description="hash identifying these exact weights (variants: base + recipe + calib + seed + versions)")
    kind: Literal["dense", "variant"]
    base_fingerprint: str | None = Field(None, description="fingerprint of the dense model a variant was made from")
    compression: CompressionInfo | None = None
    bits_per_weight: float | None = Field(None, description="average stored bits per linear-layer weight")
    size_bytes: int | None = None
    chat_template: str = Field("", description="where the chat template came from (tokenizer, fallback name, none)")
    system_role_merged: bool = Field(False, description="True when the template has no system role and the system prompt was merged into the first user turn")
    notes: list[str] = Field(default_factory=list)


class BackendInfo(_Strict):
    name: str
    device: str | None = Field(None, description="null when this run loaded no model (every answer came from the store) and no earlier document recorded it")
    dtype: str | None = Field(None, description="as device")


class EfficiencyInfo(_Strict):
    size_bytes: int | None = None
    peak_load_mem_bytes: int | None = Field(None, description="peak resident memory (host RSS high-water mark) added from before the model load through its first batch; null where not measurable or no model was loaded")
    tokens_per_s: float | None = None


class ProfileInfo(_Strict):
    name: str
    seed: int = Field(0, description="prompt-sampling seed: which rows the profile drew")
    limit: int | None = None
    n_samples: int | None = None
    gen_seed: int | None = Field(None, description="generation seed (sampling at t > 0; sample i of a prompt has the same seed for every model, see seeds.py); null in documents written before it was recorded")


class DataProvenance(_Strict):
    source: str = ""
    files: dict[str, str] = Field(default_factory=dict, description="relative path -> sha256")
    bad_rows_skipped: dict[str, int] = Field(default_factory=dict)
    bad_row_examples: list[str] = Field(default_factory=list)


class DimensionProvenance(_Strict):
    """How one dimension was produced. Several evals may write one run directory (each adds its
    dimensions under a lock); they must share the model and these settings, so the top-level
    profile/options describe every dimension; each dimension still keeps its own record."""

    created_at: str = Field(description="when this dimension was scored")
    comptrust_version: str
    profile: ProfileInfo
    options: dict[str, Any] = Field(default_factory=dict, description="perspective switches in effect")
    backend: str = Field(description="backend that generated the answers (hf, vllm, openai)")
    chat_template: str = ""
    protocol: str = Field("", description="the protocol preset ('' before presets existed)")
    on_bad_row: str = "fail"
    data: DataProvenance = Field(default_factory=DataProvenance, description="the data files this dimension read")
    scorer: Any = Field(None, description="scorer name / version, where the dimension has one")
    partial: bool = Field(False, description="True when run with --allow-partial (a perspective may have ended with 0 prompts)")


class DimensionScore(_Strict):
    dimension: str
    title: str = ""
    version: str | None = Field(None, description="the perspective's version (its requests/score/aggregate); null in documents written before it was recorded")
    score: float | None = Field(None, description="0-100, higher is more trustworthy; None when nothing was usable")
    refusal_rate: float | None = Field(None, description="0-1")
    subscores: dict[str, float | None] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list, description="skipped parts, deviations from DecodingTrust")
    extra: dict[str, Any] = Field(default_factory=dict)
    provenance: DimensionProvenance | None = Field(None, description="how this dimension was produced; null in documents written before it was recorded")

    @classmethod
    def from_result(cls, r: DimensionResult, title: str = "") -> "DimensionScore":
        return cls(dimension=r.dimension, title=title or _title(r.dimension),
                   score=r.score, refusal_rate=r.refusal_rate, subscores=dict(r.subscores),
                   counts=dict(r.counts), notes=list(r.notes), extra=dict(r.extra))


class Overall(_Strict):
    """Cross-dimension means (DecodingTrust itself defines none; see docs/report.md)."""

    trust_mean: float | None = Field(None, description="mean of the trust dimensions (the catalogue's: DecodingTrust's 8 plus any installed trust plugin); None unless all have a score")
    trust_mean_present: float | None = Field(None, description="mean of the trust dimensions that have a score")
    dimensions_used: list[str] = Field(default_factory=list, description="the dimensions in trust_mean_present")
    paper_mean_with_mmlu: float | None = Field(None, description="mean of the trust dimensions + MMLU (the Decoding Compressed Trust project page's 'Overall'); None unless all of them are present")


class Provenance(_Strict):
    data: DataProvenance = Field(default_factory=DataProvenance)
    scorers: dict[str, Any] = Field(default_factory=dict, description="scorer name -> version / settings")
    deviations: list[str] = Field(default_factory=list, description="the effective non-default switches: 'dimension: key=value' for each perspective option that differs from the protocol preset (or its default), and run-level switches overridden against the preset")


class ProtocolInfo(_Strict):
    """The protocol preset a run used (protocol.py) and every switch it controls, as in effect."""

    name: str = Field("", description="paper | dt-main | comptrust ('' in documents written before presets)")
    switches: dict[str, Any] = Field(default_factory=dict, description="every preset-controlled switch, effective value")
    overridden: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="switches the user set away from the preset: key -> {preset, effective}")


class RunResults(_Strict):
    schema_version: str = SCHEMA_VERSION
    comptrust_version: str = Field(default_factory=lambda: __version__)
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    run_id: str
    model: ModelInfo
    backend: BackendInfo
    efficiency: EfficiencyInfo = Field(default_factory=EfficiencyInfo)
    profile: ProfileInfo
    options: dict[str, Any] = Field(default_factory=dict, description="perspective switches (ctx.options)")
    protocol: ProtocolInfo = Field(default_factory=ProtocolInfo, description="protocol preset and its effective switches")
    dimensions: dict[str, DimensionScore] = Field(default_factory=dict)
    overall: Overall = Field(default_factory=Overall)
    provenance: Provenance = Field(default_factory=Provenance)
    versions: dict[str, str] = Field(default_factory=dict, description="library versions (torch, transformers, ...)")


class SampleRecord(_Strict):
    """One line of samples/<dimension>.jsonl: a SampleScore plus what the model saw and said."""

    request_id: str
    group: str
    values: dict[str, float]
    refusal: float = 0.0
    parsed: Any = None
    meta: dict[str, Any] = Field(default_factory=dict)
    prompt: str = ""
    texts: list[str] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list, description="log-likelihood per choice (multiple-choice requests)")

    @classmethod
    def from_score(cls, s: SampleScore, prompt: str = "", texts: typing.Sequence[str] = ()) -> "SampleRecord":
        return cls(request_id=s.request_id, group=s.group, values=dict(s.values), refusal=s.refusal,
                   parsed=s.parsed, meta=dict(s.meta), prompt=prompt, texts=list(texts))

    def to_score(self) -> SampleScore:
        return SampleScore(request_id=self.request_id, group=self.group, values=dict(self.values),
                           refusal=self.refusal, parsed=self.parsed, meta=dict(self.meta))


def _title(d: str) -> str:
    from .perspectives.registry import dimension_title

    return dimension_title(d)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def compute_overall(dimensions: typing.Mapping[str, DimensionScore | DimensionResult | float | None]) -> Overall:
    """The three overall means from per-dimension scores (objects with .score, or plain floats)."""

    def score_of(v: Any) -> float | None:
        if v is None or isinstance(v, (int, float)):
            return None if v is None else float(v)
        return v.score

    from .perspectives.registry import trust_dimensions

    names = trust_dimensions()
    trust = {d: score_of(dimensions[d]) for d in names if d in dimensions}
    present = [d for d in names if trust.get(d) is not None]
    vals = [trust[d] for d in present]
    all8 = len(present) == len(names)
    mmlu = score_of(dimensions["mmlu"]) if "mmlu" in dimensions else None
    return Overall(
        trust_mean=_mean(vals) if all8 else None,  # type: ignore[arg-type]
        trust_mean_present=_mean(vals) if vals else None,  # type: ignore[arg-type]
        dimensions_used=present,
        paper_mean_with_mmlu=_mean(vals + [mmlu]) if all8 and mmlu is not None else None,  # type: ignore[arg-type,list-item]
    )


# ----------------------------------------------------------------------------- comparison


class RunRef(_Strict):
    run_dir: str
    run_id: str
    label: str = Field(description="the row label in the report (e.g. 'GPTQ W4 g64*')")
    display_name: str
    kind: Literal["dense", "variant"]
    fingerprint: str
    role: Literal["baseline", "variant", "noise_floor"]
    baseline_run_id: str | None = None
    compression: CompressionInfo | None = None
    group_size_note: str | None = Field(None, description="set when the effective group size differs from the requested one")
    bits_per_weight: float | None = None
    size_bytes: int | None = None
    tokens_per_s: float | None = None
    peak_load_mem_bytes: int | None = None
    backend: BackendInfo
    profile: ProfileInfo
    chat_template: str = ""
    system_role_merged: bool = False
    protocol: ProtocolInfo = Field(default_factory=ProtocolInfo, description="the run's protocol preset and switches")
    model_notes: list[str] = Field(default_factory=list)


class DeltaCell(_Strict):
    """One (run, dimension) cell of the summary table."""

    score: float | None = None
    refusal_rate: float | None = Field(None, description="0-1: the run's refusal / unparseable rate on this dimension")
    baseline_refusal_rate: float | None = Field(None, description="0-1: the baseline's refusal / unparseable rate")
    refusal_driven: bool = Field(False, description="refusal_rate or baseline_refusal_rate above the report's refusal rule (0.5): the score measures refusals, and no gain or loss is claimed")
    baseline_score: float | None = None
    delta: float | None = Field(None, description="the displayed delta: aggregate(variant) - aggregate(baseline) on the paired requests (the quantity the CI is for); score - baseline score when the samples are absent")
    delta_paired: float | None = Field(None, description="aggregate(variant) - aggregate(baseline) on the paired requests only")
    ci_low: float | None = None
    ci_high: float | None = None
    ci_status: Literal["ci", "too_few", "none"] = Field("none", description="ci: an interval exists; too_few: too few paired requests or no estimable variance, no noise claim; none: nothing to compare")
    se: float | None = Field(None, description="standard error of delta")
    df: int | None = Field(None, description="degrees of freedom of the t quantile")
    n_strata: int = Field(0, description="resampling strata (groups of >= 5 paired requests; smaller groups pooled)")
    noise_floor_delta: float | None = Field(None, description="delta of the noise-floor run (the baseline with only the generation seed changed) on this dimension")
    within_noise: bool | None = Field(None, description="ci_low <= 0 <= ci_high; None when no CI could be computed")
    n_paired: int = 0
    n_unpaired_baseline: int = 0
    n_unpaired_variant: int = 0
    n_boot: int = 0
    n_boot_valid: int = 0
    note: str | None = Field(None, description="why there is no CI, or a mismatch found while checking")


class ReportRow(_Strict):
    run_id: str
    label: str
    role: Literal["baseline", "variant", "noise_floor"]
    baseline_run_id: str | None = None
    cells: dict[str, DeltaCell] = Field(default_factory=dict)
    overall: Overall = Field(default_factory=Overall)
    overall_score: float | None = Field(None, description="the 'Overall' column: trust_mean, else trust_mean_present")
    overall_complete: bool = Field(False, description="True when overall_score is the mean of all the trust dimensions")
    overall_delta: DeltaCell | None = Field(None, description="delta of the mean over the trust dimensions scored in both runs, with a CI from the per-dimension bootstraps")


class SpreadStat(_Strict):
    n: int
    min: float
    max: float
    std: float | None = Field(None, description="sample std (ddof=1); None for one seed")
    range: float
    exceeds: bool = Field(description="range > the threshold")


class SeedFamily(_Strict):
    label: str
    run_ids: list[str]
    seeds: list[int | None]
    threshold: float
    dimensions: dict[str, SpreadStat] = Field(default_factory=dict)
    scores: dict[str, dict[str, float | None]] = Field(default_factory=dict, description="run_id -> dimension -> score")


class SampleDiff(_Strict):
    run_id: str
    label: str
    dimension: str
    request_id: str
    group: str
    utility_delta: float = Field(description="per-request utility (variant - baseline); more negative = worse")
    ranked_by: str = Field(description="how the utility was computed")
    baseline_values: dict[str, float] = Field(default_factory=dict)
    variant_values: dict[str, float] = Field(default_factory=dict)
    prompt: str = ""
    baseline_texts: list[str] = Field(default_factory=list)
    variant_texts: list[str] = Field(default_factory=list)


class DimensionLoss(_Strict):
    dimension: str
    delta: float
    within_noise: bool | None
    ci_low: float | None = None
    ci_high: float | None = None
    n_paired: int = 0
    ci_status: str = "none"
    refusal_rate: float | None = Field(None, description="the larger of the variant's and the baseline's refusal rate")


class VariantVerdict(_Strict):
    run_id: str
    label: str
    keeps_all: bool = Field(description="shown to keep every compared dimension: each has a CI whose lower bound is >= -threshold and none is refusal-driven")
    no_detected_loss: bool = Field(False, description="every compared dimension has a CI and none is a loss outside the noise, but some CI reaches below -threshold")
    losses: list[DimensionLoss] = Field(default_factory=list, description="delta < -threshold, CI excludes 0, not refusal-driven")
    gains: list[DimensionLoss] = Field(default_factory=list, description="delta > threshold, CI excludes 0, not refusal-driven")
    inconclusive: list[DimensionLoss] = Field(default_factory=list, description="|delta| > threshold but the CI contains 0 or there is none")
    refusal_driven: list[DimensionLoss] = Field(default_factory=list, description="cells whose score measures refusals (not cited as gain or loss)")
    missing: list[str] = Field(default_factory=list, description="dimensions the baseline has and this run lacks")


class Recommendation(_Strict):
    threshold: float
    verdicts: list[VariantVerdict] = Field(default_factory=list)
    seed_unstable: list[str] = Field(default_factory=list, description="'family: dimension (range)' entries over the threshold")
    best: str | None = Field(None, description="label of the smallest variant that keeps every dimension")
    paragraphs: list[str] = Field(default_factory=list)


class RunProvenance(_Strict):
    run_id: str
    label: str
    run_dir: str
    backend: BackendInfo
    data: DataProvenance
    scorers: dict[str, Any] = Field(default_factory=dict)
    deviations: list[str] = Field(default_factory=list)
    dimension_notes: dict[str, list[str]] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class StatsSettings(_Strict):
    n_boot: int
    seed: int
    ci_level: float
    threshold: float
    method: str = "paired cluster bootstrap-t (see docs/report.md)"
    min_paired: int = Field(10, description="fewer paired requests: no CI ('too few samples to tell')")
    min_stratum: int = Field(5, description="groups with fewer paired requests are pooled for the resampling")
    refusal_rule: float = Field(0.5, description="a cell whose refusal rate (variant or baseline) is above this is refusal-driven")


class ComparisonResults(_Strict):
    schema_version: str = COMPARISON_SCHEMA_VERSION
    comptrust_version: str = Field(default_factory=lambda: __version__)
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    kind: Literal["report", "compare"]
    dimensions: list[str] = Field(description="column order")
    stats: StatsSettings
    runs: list[RunRef]
    rows: list[ReportRow]
    seed_families: list[SeedFamily] = Field(default_factory=list)
    regressions: dict[str, list[SampleDiff]] = Field(default_factory=dict, description="dimension -> worst-regressing samples")
    recommendation: Recommendation
    provenance: list[RunProvenance] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- docs


RUN_MODELS: list[type[BaseModel]] = [
    RunResults, ModelInfo, CompressionInfo, BackendInfo, EfficiencyInfo, ProfileInfo, DimensionScore,
    DimensionProvenance, Overall, Provenance, DataProvenance, SampleRecord,
]
COMPARISON_MODELS: list[type[BaseModel]] = [
    ComparisonResults, StatsSettings, RunRef, ReportRow, DeltaCell, SeedFamily, SpreadStat, SampleDiff,
    Recommendation, VariantVerdict, DimensionLoss, RunProvenance,
]


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(t))
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(t))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(t))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if t is type(None):
        return "null"
    if t is Any:
        return "any"
    return getattr(t, "__name__", str(t))


def _default_text(f: Any) -> str:
    if f.is_required():
        return "required"
    if f.default_factory is not None:
        try:
            v = f.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(v, BaseModel):
            return "{...}"
        if isinstance(v, str):  # clock / package version: not a constant
            return "(computed)"
        return json.dumps(v)
    return json.dumps(f.default)


def _model_table(m: type[BaseModel]) -> str:
    lines = [f"### {m.__name__}", ""]
    doc = (m.__doc__ or "").strip()
    if doc:
        lines += [" ".join(doc.split()), ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, f in m.model_fields.items():
        desc = (f.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type_name(f.annotation).replace('|', chr(92) + '|')}` | {_default_text(f)} | {desc} |")
    return "\n".join(lines) + "\n"


def render_schema_markdown() -> str:
    parts = [
        "# Results schema",
        "",
        "<!-- generated by `python -m comptrust.results_schema > docs/results-schema.md`; do not edit -->",
        "",
        f"Run results: `schema_version` **{SCHEMA_VERSION}**. Comparison results: `schema_version` "
        f"**{COMPARISON_SCHEMA_VERSION}**. Readers refuse other versions with an error naming the file.",
        "",
        "## Run directory",
        "",
        "```",
        "RUN_DIR/results.json               RunResults",
        "RUN_DIR/samples/<dimension>.jsonl  one SampleRecord per line (one per request)",
        "```",
        "",
        f"Trust dimensions: {', '.join('`' + d + '`' for d in __getattr__('TRUST_DIMENSIONS'))}. "
        f"Benign: {', '.join('`' + d + '`' for d in __getattr__('BENIGN_DIMENSIONS'))}.",
        "",
    ]
    parts += [_model_table(m) for m in RUN_MODELS]
    parts += ["## Comparison (`comptrust report` / `comptrust compare` OUT/results.json)", ""]
    parts += [_model_table(m) for m in COMPARISON_MODELS]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render_schema_markdown())
