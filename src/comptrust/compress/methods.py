"""The method registry: what a user asks for (CompressSpec) -> llm-compressor modifiers.

| method    | llm-compressor                          | calibration | weight update |
|-----------|-----------------------------------------|-------------|---------------|
| rtn       | QuantizationModifier (round-to-nearest) | no          | no            |
| gptq      | GPTQModifier                            | yes         | yes           |
| awq       | AWQModifier + QuantizationModifier      | yes         | yes (scales)  |
| sparsegpt | SparseGPTModifier                       | yes         | yes           |
| wanda     | WandaPruningModifier                    | yes         | no            |
| magnitude | computed here (see workarounds.py)      | no          | no            |

Quantization is weight-only (W{3,4,8}A16), integer, per group of `group_size` input columns.
Symmetry follows the reference implementations the paper used: GPTQ and RTN are symmetric
(llm-compressor's W4A16 preset and AutoGPTQ's default `sym=True`); AWQ is asymmetric, with a
zero point (upstream llm-awq's `zero_point=True`, llm-compressor's W4A16_ASYM AWQ example).
`symmetric=` overrides either. The output embedding (lm_head) always stays dense.

N:M structures follow the wanda/llm-compressor convention: in every M consecutive input
weights of a row, the N smallest-scored are zeroed, so 2:4, 4:8 and 1:2 are all 50% sparse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import CompressionError

QUANT_METHODS = ("rtn", "gptq", "awq")
PRUNE_METHODS = ("sparsegpt", "wanda", "magnitude")
METHODS = QUANT_METHODS + PRUNE_METHODS
NEEDS_CALIBRATION = {"rtn": False, "gptq": True, "awq": True, "sparsegpt": True, "wanda": True, "magnitude": False}
DEFAULT_SYMMETRIC = {"rtn": True, "gptq": True, "awq": False}

BITS = (3, 4, 8)
STRUCTURES = ("unstructured", "2:4", "4:8", "1:2")
CALIB_NAMES = ("bundled", "c4", "pile", "alpaca")
# 32 x 512: the bundled text (~66.6k SmolLM2 tokens = 130 windows of 512) then gives seeds 0-3
# disjoint calibration sets (see calibration.seed_windows). The paper used 128 samples from the
# hub's large corpora; specs/paper.yaml asks for 128 explicitly.
DEFAULT_N_CALIB = 32
DEFAULT_SEQ_LEN = 512
# vLLM's compressed-tensors WNA16 kernels take 4- and 8-bit weights only (3-bit codes are packed
# as one continuous bit stream, which no vLLM kernel reads). transformers loads every width.
VLLM_WEIGHT_BITS = (4, 8)


@dataclass(frozen=True)
class CompressSpec:
    """A validated compression request. Use `CompressSpec.make(...)`, which checks every field."""

    method: str
    bits: int | None = None  # quantization only
    group_size: int = 128  # -1 = one scale per output channel
    symmetric: bool | None = None
    sparsity: float | None = None  # pruning only
    structure: str | None = None  # pruning only
    calib: str = "bundled"  # bundled | c4 | pile | alpaca | path to .txt/.jsonl
    n_calib: int = DEFAULT_N_CALIB
    seq_len: int = DEFAULT_SEQ_LEN
    seed: int | None = 0  # None for methods without calibration (their result does not depend on it)
    chat_template_calib: bool = False
    # AWQ only: points of its per-layer scale grid search (None = llm-compressor's 20, the paper's);
    # the demo lowers it to fit a CPU (each point re-runs the layer on the calibration set)
    awq_n_grid: int | None = None

    @property
    def is_quant(self) -> bool:
        return self.method in QUANT_METHODS

    @property
    def needs_calibration(self) -> bool:
        return NEEDS_CALIBRATION[self.method]

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) for an N:M structure: N of every M consecutive input weights are zero."""
        if self.structure in (None, "unstructured"):
            return None
        n, m = self.structure.split(":")
        return int(n), int(m)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["awq_n_grid"] is None:  # left at the library default: absent, as in requests made before the option
            del d["awq_n_grid"]
        return d

    @classmethod
    def make(
        cls,
        method: str,
        *,
        bits: int | None = None,
        group_size: int | None = None,
        symmetric: bool | None = None,
        sparsity: float | None = None,
        structure: str | None = None,
        calib: str = "bundled",
        n_calib: int = DEFAULT_N_CALIB,
        seq_len: int = DEFAULT_SEQ_LEN,
        seed: int | None = 0,
        chat_template_calib: bool = False,
        awq_n_grid: int | None = None,
    ) -> "CompressSpec":
        method = (method or "").strip().lower()
        if method not in METHODS:
            raise CompressionError(f"unknown compression method {method!r}; use one of: {', '.join(METHODS)}")
        if method in QUANT_METHODS:
            if sparsity is not None or structure not in (None, "unstructured"):
                raise CompressionError(
                    f"--sparsity/--structure apply to pruning methods ({', '.join(PRUNE_METHODS)}), not {method}; drop them"
                )
            bits = 4 if bits is None else bits
            if bits not in BITS:
                raise CompressionError(f"--bits {bits} is not supported; use one of {', '.join(map(str, BITS))}")
            group_size = 128 if group_size is None else group_size
            if group_size != -1 and group_size < 1:
                raise CompressionError(f"--group-size {group_size} is invalid; use a positive size (128) or -1 for per-channel")
            from .groupsize import MIN_GROUP

            if 0 < group_size < MIN_GROUP:  # checked here, before any model is loaded
                raise CompressionError(f"--group-size {group_size} is below the smallest supported group size {MIN_GROUP}; "
                                       f"use {MIN_GROUP} or more (e.g. 64, 128), or -1 for one scale per output channel")
            symmetric = DEFAULT_SYMMETRIC[method] if symmetric is None else symmetric
            structure = None
        else:
            if bits is not None:
                raise CompressionError(f"--bits applies to quantization methods ({', '.join(QUANT_METHODS)}), not {method}; drop it")
            structure = structure or "unstructured"
            if structure not in STRUCTURES:
                raise CompressionError(f"--structure {structure!r} is not supported; use one of {', '.join(STRUCTURES)}")
            if structure != "unstructured":
                n, m = (int(x) for x in structure.split(":"))
                implied = n / m
                if sparsity is None:
                    sparsity = implied
                elif abs(sparsity - implied) > 1e-9:
                    raise CompressionError(
                        f"--structure {structure} zeroes {n} of every {m} weights, i.e. sparsity {implied:g}, but "
                        f"--sparsity {sparsity:g} was given; drop --sparsity or pass --sparsity {implied:g}"
                    )
            sparsity = 0.5 if sparsity is None else float(sparsity)
            if not 0.0 < sparsity < 1.0:
                raise CompressionError(f"--sparsity {sparsity:g} is out of range; pass a fraction strictly between 0 and 1 (e.g. 0.5)")
            group_size = 0  # not applicable
            symmetric = None
        if n_calib < 1:
            raise CompressionError(f"--n-calib {n_calib} must be at least 1")
        if seq_len < 8:
            raise CompressionError(f"--seq-len {seq_len} is too short; use at least 8 tokens (512 is the paper's setting)")
        if awq_n_grid is not None:
            if method != "awq":
                raise CompressionError(f"awq_n_grid applies to method awq, not {method}; drop it")
            if awq_n_grid < 2:
                raise CompressionError(f"awq_n_grid {awq_n_grid} is too small; use at least 2 grid points (20 is AWQ's default)")
        if not NEEDS_CALIBRATION[method]:
            # No calibration is read and nothing is random, so neither is part of the variant's identity.
            calib, n_calib, seq_len, chat_template_calib, seed = "none", 0, 0, False, None
        return cls(method=method, bits=bits, group_size=group_size, symmetric=symmetric, sparsity=sparsity,
                   structure=structure, calib=calib, n_calib=n_calib, seq_len=seq_len, seed=seed,
                   chat_template_calib=chat_template_calib, awq_n_grid=awq_n_grid)

    @property
    def loadable_by(self) -> list[str]:
        """Which engines can load the saved variant."""
        if self.is_quant and self.bits not in VLLM_WEIGHT_BITS:
            return ["transformers"]
        return ["transformers", "vllm"]

    def short_name(self, effective_group_size: int | None = None, calib_tag: str | None = None) -> str:
        """Every request field that changes the weights, filesystem-safe, e.g.
        gptq-w4g64-bundled-32x512-s0, awq-w4g64-sym-pile-128x512-chat-s1, wanda-2of4-c4-128x512-s0,
        magnitude-50pct. `calib_tag` names a calibration file (its stem and content hash; the
        caller knows the hash); named sources use their name."""
        if self.is_quant:
            g = effective_group_size if effective_group_size is not None else self.group_size
            gs = "ch" if g == -1 else f"g{g}"
            sym = "" if self.symmetric == DEFAULT_SYMMETRIC[self.method] else ("-sym" if self.symmetric else "-asym")
            core = f"{self.method}-w{self.bits}{gs}{sym}" + (f"-grid{self.awq_n_grid}" if self.awq_n_grid else "")
        elif self.structure == "unstructured":
            core = f"{self.method}-{self.sparsity * 100:g}pct".replace(".", "p")
        else:
            core = f"{self.method}-{self.structure.replace(':', 'of')}"
        if not self.needs_calibration:
            return core
        source = calib_tag or (self.calib if self.calib in CALIB_NAMES else calib_file_tag(self.calib))
        chat = "-chat" if self.chat_template_calib else ""
        return f"{core}-{source}-{self.n_calib}x{self.seq_len}{chat}-s{self.seed}"


def calib_file_tag(path: str) -> str:
    """A calibration file's stem, reduced to filesystem-safe characters (build adds its content hash)."""
    import re
    from pathlib import Path

    stem = re.sub(r"[^A-Za-z0-9._]+", "_", Path(path).stem).strip("._") or "file"
    return stem[:32]


def quant_scheme(spec: CompressSpec, group_size: int, targets: list[str]):
    """A weight-only integer QuantizationScheme (custom config group: presets fix group size 128)."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    if group_size == -1:
        weights = QuantizationArgs(num_bits=spec.bits, type="int", strategy="channel", symmetric=spec.symmetric, dynamic=False)
    else:
        weights = QuantizationArgs(num_bits=spec.bits, type="int", strategy="group", group_size=group_size,
                                   symmetric=spec.symmetric, dynamic=False)
    return QuantizationScheme(targets=targets, weights=weights)


def make_modifiers(spec: CompressSpec, *, group_size: int, ignore: list[str]) -> list[Any]:
    """The llm-compressor modifiers for spec (empty for magnitude, which is applied directly).

    `ignore` names the modules that stay dense (the output embedding). The pruning modifiers
    match `ignore` against names like "lm_head." (see workarounds.pruning_ignore), so it is
    passed through that helper.
    """
    from .workarounds import pruning_ignore

    if spec.method == "magnitude":
        return []
    if spec.is_quant:
        from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

        groups = {"group_0": quant_scheme(spec, group_size, ["Linear"])}
        if spec.method == "rtn":
            return [QuantizationModifier(config_groups=groups, ignore=ignore)]
        if spec.method == "gptq":
            return [GPTQModifier(config_groups=groups, ignore=ignore)]
        from llmcompressor.modifiers.transform.awq import AWQModifier

        awq = AWQModifier(n_grid=spec.awq_n_grid) if spec.awq_n_grid else AWQModifier()
        return [awq, QuantizationModifier(config_groups=groups, ignore=ignore)]
    mask = "0:0" if spec.nm is None else f"{spec.nm[0]}:{spec.nm[1]}"
    if spec.method == "sparsegpt":
        from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier

        return [SparseGPTModifier(sparsity=spec.sparsity, mask_structure=mask, ignore=pruning_ignore(ignore))]
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    return [WandaPruningModifier(sparsity=spec.sparsity, mask_structure=mask, ignore=pruning_ignore(ignore))]


# A modifier's lifecycle state and stage bookkeeping: pydantic fields, but not part of what it does.
_LIFECYCLE_FIELDS = {"index", "group", "start", "end", "update", "initialized_", "finalized_", "started_", "ended_"}


def recipe_record(spec: CompressSpec, modifiers: list[Any], *, group_size: int, ignore: list[str]) -> dict[str, Any]:
    """The full recipe as plain data: every argument of every llm-compressor modifier, the
    defaults included (actorder, dampening_frac, block_size, n_grid, ...), so the record says what
    ran without looking up the library version; or, for magnitude, the explicit description of
    what build applies. Plain JSON types only: it is written as safe YAML (recipe.yaml)."""
    if spec.method == "magnitude":
        return {"magnitude": {"criterion": "|w|", "scope": "per weight matrix (unstructured) or per M input weights (N:M)",
                              "sparsity": spec.sparsity, "structure": spec.structure, "ignore": ignore,
                              "targets": "every Linear except ignore"}}
    import json

    mods = {}
    for m in modifiers:
        dumped = m.model_dump(mode="json", exclude=_LIFECYCLE_FIELDS)
        mods[type(m).__name__] = json.loads(json.dumps(dumped, default=str))
    return {"default_stage": {"default_modifiers": mods}}


def recipe_yaml(recipe: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(recipe, sort_keys=True)
