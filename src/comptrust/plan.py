"""A sweep spec -> the concrete jobs and what they will cost (printable before anything starts).

Jobs, in the order the sweep runs them, per model: evaluate the dense model, then for each
variant build it and evaluate it (so the first comparison is available early and an interruption
loses at most one job). Every eval job sees the same prompts: prompt sampling depends only on
(data, profile, seed, limit), never on the model, so the per-eval workload is counted once and
multiplied.

`expand` and `estimate` are pure. `measure_workload` reads the data (it asks each perspective for
its requests, exactly as runner.build_plan does, but without a tokenizer: counts do not depend on
the chat template) and `measured_throughput` reads existing run directories.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compress.methods import CompressSpec
from .spec import LoadedSpec, expand_variant

# CPU compression time comes from compress.cost: a per-method model fitted from measured builds
# (calibration tokens x layers, scaled by parameters), rescaled by this machine's own recorded builds.
REF_PARAMS = 134_515_008  # SmolLM2-135M

# On a GPU the only figure we have is the paper's (reference/paper-findings.md §1.2, citing AWQ):
# compressing a 13b model to 4 bits "takes merely half an hour on a 48Gb A40 GPU", with the
# paper's 128 calibration samples. It stands for every calibrated method. RTN and magnitude have
# no GPU figure; loading and saving 13b of weights dominates them, taken here as 2 minutes.
GPU_REF_SECONDS_CALIBRATED = 1800.0
GPU_REF_SECONDS_UNCALIBRATED = 120.0
GPU_REF_PARAMS = 13_000_000_000
GPU_REF_N_CALIB = 128

# Generation throughput used when no run directory has measured one: the embedded model on a
# 2-core CPU with the batched HF backend. Measured by `comptrust demo` on this project's shared
# 2-core machine: 1.3 / 2.2 / 3.0 generated tok/s (dense / RTN-W4 / magnitude-50%) while the
# process got about half a core; with both cores free that is about 5 tok/s. Generated tokens
# only: few-shot prompts (fairness, machine ethics) cost prefill time that this figure absorbs.
# benchmarks/generation_throughput.py measures your machine; a sweep's own finished runs replace it.
DEFAULT_TOKENS_PER_S = 5.0


@dataclass(frozen=True)
class ModelTarget:
    name: str  # directory name
    ref: str
    chat_template: str | None
    trust_remote_code: bool


@dataclass(frozen=True)
class BuildJob:
    model: str
    variant: str
    spec: CompressSpec
    out_dir: Path  # relative to the sweep directory

    @property
    def id(self) -> str:
        return f"build/{self.model}/{self.variant}"

    @property
    def kind(self) -> str:
        return "build"


@dataclass(frozen=True)
class EvalJob:
    model: str
    target: str  # "dense" or a variant name
    out_dir: Path  # relative to the sweep directory
    variant_dir: Path | None = None  # relative; None for the dense model
    noise_floor: bool = False  # the dense model again, generation seed + 1 (spec noise_floor)

    @property
    def id(self) -> str:
        return f"eval/{self.model}/{self.target}"

    @property
    def kind(self) -> str:
        return "eval"


Job = BuildJob | EvalJob


@dataclass(frozen=True)
class SweepPlan:
    models: tuple[ModelTarget, ...]
    jobs: tuple[Job, ...]

    @property
    def builds(self) -> list[BuildJob]:
        return [j for j in self.jobs if isinstance(j, BuildJob)]

    @property
    def evals(self) -> list[EvalJob]:
        return [j for j in self.jobs if isinstance(j, EvalJob)]


def expand(loaded: LoadedSpec) -> SweepPlan:
    """models x (dense + variants x seeds) -> ordered jobs. Pure."""
    spec = loaded.spec
    variants = [pair for v in spec.variants for pair in expand_variant(v)]
    models, jobs = [], []
    for m in spec.models:
        name = m.dir_name
        models.append(ModelTarget(name, m.ref, m.chat_template, m.trust_remote_code))
        jobs.append(EvalJob(name, "dense", Path("runs") / name / "dense"))
        if spec.noise_floor:
            jobs.append(EvalJob(name, "dense-noise-floor", Path("runs") / name / "dense-noise-floor", noise_floor=True))
        for vname, cs in variants:
            vdir = Path("variants") / name / vname
            jobs.append(BuildJob(name, vname, cs, vdir))
            jobs.append(EvalJob(name, vname, Path("runs") / name / vname, vdir))
    return SweepPlan(tuple(models), tuple(jobs))


# -- workload -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DimWorkload:
    dimension: str
    prompts: int
    samples: int  # generations (or log-likelihood requests) to run
    token_budget: int  # sum of max_new_tokens over samples: an upper bound (generation stops at EOS)


@dataclass(frozen=True)
class Workload:
    """What ONE eval job asks of a model (identical for every model of the sweep)."""

    rows: tuple[DimWorkload, ...]
    notes: tuple[str, ...] = ()

    @property
    def prompts(self) -> int:
        return sum(r.prompts for r in self.rows)

    @property
    def samples(self) -> int:
        return sum(r.samples for r in self.rows)

    @property
    def token_budget(self) -> int:
        return sum(r.token_budget for r in self.rows)


def workload_from_requests(requests: dict[str, list]) -> Workload:
    """Counts as the eval's Plan.summary does (pipeline.build.request_counts). Pure."""
    from .pipeline.build import request_counts

    return Workload(tuple(DimWorkload(name, *request_counts(reqs)) for name, reqs in requests.items()))


def measure_workload(loaded: LoadedSpec) -> Workload:
    """Ask each perspective for its requests (reads the data; no model, no tokenizer)."""
    from .perspectives.base import PerspectiveContext, get_perspective, resolve_options
    from .profiles import get_profile
    from .pipeline.build import make_data_source

    spec = loaded.spec
    data = make_data_source(loaded.data_dir, spec.on_bad_row)
    profile = get_profile(spec.profile)
    requests, notes = {}, []
    from .protocol import resolve as resolve_protocol

    proto = resolve_protocol(spec.protocol, list(spec.dimensions), spec.options)
    options = resolve_options(list(spec.dimensions), proto.perspective_options)
    for name in spec.dimensions:
        ctx = PerspectiveContext(data=data, profile=profile, seed=spec.seed, limit=spec.limit)
        requests[name] = get_perspective(name, options[name]).requests(ctx)
        notes += [f"{name}: {n}" if not n.startswith(name) else n for n in ctx.notes]
    w = workload_from_requests(requests)
    return Workload(w.rows, tuple(dict.fromkeys(notes)))


# -- cost -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    tokens_per_s: float
    source: str  # said to the user: where the figure comes from


def measured_throughput(run_dirs: list[Path]) -> Throughput | None:
    """Median efficiency.tokens_per_s over the run dirs' results.json that hold one."""
    vals = []
    for d in run_dirs:
        try:
            v = json.loads((Path(d) / "results.json").read_text()).get("efficiency", {}).get("tokens_per_s")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(v, (int, float)) and v > 0:
            vals.append(float(v))
    if not vals:
        return None
    return Throughput(statistics.median(vals), f"measured: median of {len(vals)} finished run(s) in this sweep")


def default_throughput() -> Throughput:
    return Throughput(DEFAULT_TOKENS_PER_S, f"default: {DEFAULT_TOKENS_PER_S:g} tok/s, the embedded model on a 2-core CPU "
                                           "(no run in this sweep has measured one yet)")


_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([mMbB])(?![a-zA-Z])")


def params_from_name(ref: str) -> int | None:
    """'meta-llama/Llama-2-13b-chat-hf' -> 13e9; used only when the checkpoint is not at hand."""
    m = None
    for m in _SIZE_IN_NAME.finditer(ref):
        pass
    if m is None:
        return None
    return int(float(m.group(1)) * (1e9 if m.group(2).lower() == "b" else 1e6))


def params_in_checkpoint(path: Path) -> int | None:
    """Parameter count from the safetensors headers (shapes only; no weights are read)."""
    from .st_header import read_header, tensors

    total = 0
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        return None
    try:
        for f in files:
            total += sum(math.prod(v.get("shape", [])) for v in tensors(read_header(f)[1]).values())
    except (OSError, ValueError):
        return None
    return total or None


def compress_seconds(spec: CompressSpec, params: int | None, gpu: bool = False,
                     records: list[dict[str, Any]] | None = None) -> float:
    """Build time estimate. CPU: compress.cost's measured model for the method (n_calib x seq_len
    tokens, model size), rescaled by `records` (this machine's measured builds; None reads them).
    GPU: the paper's figure scaled by n_calib and model size."""
    if gpu:
        if not spec.needs_calibration:
            return GPU_REF_SECONDS_UNCALIBRATED * (params or GPU_REF_PARAMS) / GPU_REF_PARAMS
        return GPU_REF_SECONDS_CALIBRATED * spec.n_calib / GPU_REF_N_CALIB * (params or GPU_REF_PARAMS) / GPU_REF_PARAMS
    from .compress.cost import estimate_seconds

    n, seq = (spec.n_calib, spec.seq_len) if spec.needs_calibration else (0, 0)
    return estimate_seconds(spec.method, params, n, seq, records, awq_n_grid=spec.awq_n_grid).seconds


@dataclass
class Cost:
    n_builds: int
    n_evals: int
    workload: Workload
    throughput: Throughput
    build_seconds: dict[str, float]  # job id -> estimate
    eval_seconds_each: dict[str, float]  # job id -> estimate
    remaining: list[str] = field(default_factory=list)  # job ids not yet done

    @property
    def total_prompts(self) -> int:
        return self.workload.prompts * self.n_evals

    @property
    def total_token_budget(self) -> int:
        return self.workload.token_budget * self.n_evals

    @property
    def eta_seconds(self) -> float:
        rem = set(self.remaining)
        return (sum(s for j, s in self.build_seconds.items() if j in rem)
                + sum(s for j, s in self.eval_seconds_each.items() if j in rem))

    def to_json(self) -> dict[str, Any]:
        return {
            "builds": self.n_builds, "evals": self.n_evals,
            "per_eval": {"prompts": self.workload.prompts, "samples": self.workload.samples,
                         "token_budget": self.workload.token_budget},
            "total_prompts": self.total_prompts, "total_token_budget": self.total_token_budget,
            "tokens_per_s": self.throughput.tokens_per_s, "throughput_source": self.throughput.source,
            "build_seconds": self.build_seconds, "eval_seconds": self.eval_seconds_each,
            "eta_seconds_remaining": round(self.eta_seconds, 1),
        }


def estimate(plan: SweepPlan, workload: Workload, throughput: Throughput,
             params: dict[str, int | None] | None = None,
             done: set[str] | frozenset = frozenset(), gpu: bool = False) -> Cost:
    """Cost of the plan. Eval time = token budget / tokens_per_s (an upper bound: answers often
    stop early); a default throughput is scaled to each model's size (it was measured on the
    embedded model), a measured one is used as is. `gpu` picks the GPU compression figures. Reads
    this machine's recorded build times (compress.cost) once; otherwise pure."""
    from .compress.cost import load_records

    params = params or {}
    records = [] if gpu else load_records()
    builds = {j.id: compress_seconds(j.spec, params.get(j.model), gpu, records) for j in plan.builds}
    evals = {}
    for j in plan.evals:
        tps = throughput.tokens_per_s
        if throughput.source.startswith("default") and params.get(j.model):
            tps *= REF_PARAMS / params[j.model]
        evals[j.id] = workload.token_budget / max(tps, 1e-9)
    return Cost(len(builds), len(evals), workload, throughput, builds, evals,
                [j.id for j in plan.jobs if j.id not in done])


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
