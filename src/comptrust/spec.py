"""Sweep specs: a YAML file -> a validated SweepSpec, or one error line that points at the file line.

A sweep spec names the models, the compression variants (each expanded over its calibration
seeds), the dimensions and the evaluation settings shared by every model (profile, seed, limit,
data, options), so dense and compressed models see the same prompts.

Validation happens in three layers, all before anything is started or written:
  1. YAML syntax (yaml's own line/column);
  2. shapes and types (pydantic, `extra="forbid"`, so a typo is an error, not a silent default);
  3. meaning: every variant through `CompressSpec.make` (the compress module owns those rules),
     expanded names unique, dimensions in the perspective registry, the profile known, data_dir
     present, every model reference resolvable.
Each error is reported as `FILE:LINE: field: message` with the fix, where LINE is the line of
the offending key in the YAML (found by walking yaml's composed node tree along the error's loc).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .backends.base import BACKEND_NAMES as BACKENDS  # noqa: F401  (the one list)
from .backends.base import DEFAULT_BATCH_SIZE
from .errors import ComptrustError, ModelRefError

BUILTIN_DIR = Path(__file__).parent / "specs"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
Loc = tuple[str | int, ...]


class SpecError(ComptrustError):
    """A sweep spec is invalid; the message is `FILE:LINE: field: problem; fix`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    ref: str = Field(min_length=1)
    name: str | None = None  # directory name under runs/ and variants/; default derived from ref
    chat_template: str | None = None  # tokenizer | llama-2 | vicuna_v1.1 | plain | dt-fastchat[:TEMPLATE]
    trust_remote_code: bool = False
    allow_pickle: bool = False  # pickle (.bin/.pt) weights can run code when loaded

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, v: str | None) -> str | None:
        from .models.chat import OVERRIDES

        if v is not None and v not in OVERRIDES:
            raise ValueError(f"unknown chat template {v!r}; use {', '.join(OVERRIDES)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _plain_ref(cls, v: Any) -> Any:
        return {"ref": v} if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str | None) -> str | None:
        if v is not None and not _SAFE_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a safe directory name; use letters, digits, '.', '_' and '-'")
        return v

    @property
    def dir_name(self) -> str:
        return self.name or default_model_name(self.ref)


class VariantEntry(_Strict):
    name: str
    method: str
    bits: int | None = None
    group_size: int | None = None
    symmetric: bool | None = None
    sparsity: float | None = None
    structure: str | None = None
    calib: str = "bundled"
    n_calib: int = 32  # = compress.methods.DEFAULT_N_CALIB (tests/test_compress_facts.py keeps them equal)
    seq_len: int = 512  # = compress.methods.DEFAULT_SEQ_LEN
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    chat_template_calib: bool = False
    awq_n_grid: int | None = None  # AWQ only: scale grid points (default: llm-compressor's 20)

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str) -> str:
        if not _SAFE_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a safe directory name; use letters, digits, '.', '_' and '-'")
        if v == "dense":
            raise ValueError("'dense' is reserved for the uncompressed model's run; rename the variant")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds {v} repeat a seed; list each calibration seed once")
        return v


class SweepSpec(_Strict):
    description: str | None = None
    models: list[ModelEntry] = Field(min_length=1)
    variants: list[VariantEntry] = Field(default_factory=list)
    dimensions: list[str] = Field(min_length=1)
    profile: str = "smoke"
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0  # prompt-sampling seed: which rows the profile draws (seeds.py)
    gen_seed: int = 0  # generation seed: sampling at t > 0, the same for every model (seeds.py)
    # also evaluate each dense model with generation seed gen_seed + 1: the report's noise floor
    noise_floor: bool = False
    data_dir: str | None = None  # relative paths are relative to the spec file; None = bundled mini set
    options: dict[str, Any] = Field(default_factory=dict)
    # protocol preset (comptrust/protocol.py); `options` override its switches
    protocol: Literal["paper", "dt-main", "comptrust"] = "paper"
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1)  # HF engine: rows decoding at once (docs/engine.md)
    on_bad_row: Literal["fail", "skip"] = "fail"
    device: str | None = None  # cpu | cuda; default: cuda when available
    # torch intra-op threads while a variant is built here (None: torch's default). A build
    # setting, not part of any variant's identity; see docs/sweep.md, "Build speed".
    compress_threads: int | None = Field(default=None, ge=1)
    # which engine generates: hf (transformers, this machine), vllm (GPU machines, prefix caching;
    # its own environment), openai (an OpenAI-compatible endpoint: models are openai:NAME@URL refs)
    backend: Literal["hf", "vllm", "openai"] = "hf"
    tensor_parallel_size: int = Field(default=1, ge=1)  # vllm: GPUs per model


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec plus where it came from (for messages and relative paths)."""

    spec: SweepSpec
    source: str  # the path as the user gave it, or the built-in's file name
    base_dir: Path  # directory relative data_dir paths are resolved against
    data_dir: Path | None  # resolved
    text: str  # the YAML as read (recorded in sweep.json)


def default_model_name(ref: str) -> str:
    """embedded:smollm2-135m-instruct -> smollm2-135m-instruct; org/name@rev -> name; /a/b/ -> b."""
    s = ref.strip()
    if s.startswith("embedded:"):
        s = s.split(":", 1)[1]
    else:
        s = s.split("@", 1)[0].rstrip("/\\")
        s = re.split(r"[/\\]", s)[-1]
        if s.endswith(".gguf"):
            s = s[:-5]
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-.") or "model"
    return s


def builtin_specs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def spec_path(name_or_path: str | Path) -> Path:
    """A path as given, or a built-in spec's file (`paper`, `demo`, `demo-full`)."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if p.exists():
        raise SpecError(f"{p} is not a file; pass a sweep spec .yaml or a built-in name ({', '.join(builtin_specs())})")
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if not str(name_or_path).endswith((".yaml", ".yml")) and builtin.is_file():
        return builtin
    raise SpecError(f"sweep spec {str(name_or_path)!r} not found; pass a .yaml path or a built-in name ({', '.join(builtin_specs())})")


# -- locating errors ------------------------------------------------------------------------------


def _node_line(root: yaml.Node | None, loc: Loc) -> int:
    """1-based line of the YAML key/item that loc names (or of its deepest existing ancestor)."""
    if root is None:
        return 1
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _field(loc: Loc) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "spec"


_PYDANTIC_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it or fix its spelling",
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
    "list_type": "write it as a YAML list",
    "dict_type": "write it as a YAML mapping (key: value)",
    "string_type": "use a string",
    "too_short": "give at least one entry",
    "greater_than_equal": "use a larger value",
    "literal_error": "use one of the listed values",
}

_ALLOWED = {
    (): SweepSpec, ("models",): ModelEntry, ("variants",): VariantEntry,
}


def _pydantic_message(err: dict) -> tuple[Loc, str]:
    loc: Loc = tuple(err["loc"])
    typ = err["type"]
    msg = err["msg"]
    if typ == "value_error":
        msg = msg.removeprefix("Value error, ")
        return loc, msg
    if typ == "extra_forbidden":
        parent = tuple(p for p in loc[:-1] if isinstance(p, str))
        model = _ALLOWED.get(parent)
        allowed = f"; allowed fields: {', '.join(model.model_fields)}" if model else ""
        return loc, f"unknown field; remove it or fix its spelling{allowed}"
    # a model given as a plain string shows up as loc (..., "ref"/"name"); fine as is
    fix = _PYDANTIC_FIXES.get(typ, "fix the value")
    if typ == "missing":
        return loc, "required field missing; add it"
    return loc, f"{msg[0].lower() + msg[1:]}; {fix}"


def _error(source: str, root: yaml.Node | None, loc: Loc, message: str, more: int = 0) -> SpecError:
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return SpecError(f"{source}:{_node_line(root, loc)}: {_field(loc)}: {message}{tail}")


# -- loading --------------------------------------------------------------------------------------


def _flag_to_field(msg: str) -> str:
    """CompressSpec's messages speak CLI flags (--n-calib); in a spec the fields are n_calib."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), msg)


_FIELD_FOR_MESSAGE = [  # which variant field a CompressSpec error is about (first match wins)
    ("unknown compression method", "method"), ("--structure", "structure"), ("--sparsity", "sparsity"),
    ("--bits", "bits"), ("--group-size", "group_size"), ("--n-calib", "n_calib"), ("--seq-len", "seq_len"),
]


def expand_variant(v: VariantEntry) -> list[tuple[str, Any]]:
    """One (name, CompressSpec) per seed; `<name>-s<seed>` when there are several seeds.
    Raises CompressionError exactly as `comptrust compress` would."""
    from .compress.methods import CompressSpec

    out = []
    for seed in v.seeds:
        cs = CompressSpec.make(v.method, bits=v.bits, group_size=v.group_size, symmetric=v.symmetric,
                               sparsity=v.sparsity, structure=v.structure, calib=v.calib, n_calib=v.n_calib,
                               seq_len=v.seq_len, seed=seed, chat_template_calib=v.chat_template_calib,
                               awq_n_grid=v.awq_n_grid)
        out.append((f"{v.name}-s{seed}" if len(v.seeds) > 1 else v.name, cs))
    return out


def backend_fit_errors(spec: SweepSpec) -> list[tuple[Loc, str]]:
    """The spec's models and variants must suit its backend (also checked for `--backend`)."""
    errors: list[tuple[Loc, str]] = []
    for i, m in enumerate(spec.models):
        if (spec.backend == "openai") != m.ref.startswith("openai:"):
            errors.append((("models", i, "ref"),
                           f"model {m.ref!r} does not fit backend {spec.backend}: openai:NAME@URL models need "
                           "backend openai, local and hub models hf or vllm"))
    if spec.backend == "openai" and spec.variants:
        errors.append((("variants",), "an endpoint model cannot be compressed here; remove variants or use backend hf | vllm"))
    return errors


def _check_meaning(spec: SweepSpec, base_dir: Path) -> list[tuple[Loc, str]]:
    from .errors import CompressionError
    from .perspectives.base import list_perspectives
    from .profiles import PROFILES

    errors: list[tuple[Loc, str]] = []
    seen_models: dict[str, int] = {}
    for i, m in enumerate(spec.models):
        if m.dir_name in seen_models:
            errors.append((("models", i, "name" if m.name else "ref"),
                           f"model name {m.dir_name!r} is already used by models[{seen_models[m.dir_name]}]; give one a distinct `name:`"))
        seen_models.setdefault(m.dir_name, i)
    seen: dict[str, int] = {}
    for i, v in enumerate(spec.variants):
        try:
            expanded = expand_variant(v)
        except CompressionError as e:
            field = next((f for key, f in _FIELD_FOR_MESSAGE if key in str(e)), "method")
            errors.append((("variants", i, field), _flag_to_field(str(e))))
            continue
        if len(v.seeds) > 1 and expanded[0][1].seed is None:
            errors.append((("variants", i, "seeds"),
                           f"{v.method} uses no calibration data, so every seed gives the same variant; list one seed"))
        for name, _ in expanded:
            if name in seen:
                errors.append((("variants", i, "name"),
                               f"variant name {name!r} is already used by variants[{seen[name]}]; variant names must be unique, rename one"))
            seen.setdefault(name, i)
    known = list_perspectives()
    for i, d in enumerate(spec.dimensions):
        if d not in known:
            errors.append((("dimensions", i), f"unknown dimension {d!r}; use one of: {', '.join(sorted(known))}"))
    if len(set(spec.dimensions)) != len(spec.dimensions):
        errors.append((("dimensions",), "a dimension is listed twice; list each once"))
    if all(d in known for d in spec.dimensions):
        from .errors import ConfigError
        from .perspectives.base import resolve_options

        try:
            from .protocol import resolve as resolve_protocol

            raw = resolve_protocol(spec.protocol, list(spec.dimensions), spec.options).perspective_options
            resolve_options(list(spec.dimensions), raw)  # unknown or ill-typed options
        except ConfigError as e:
            errors.append((("options",), str(e)))
    errors += backend_fit_errors(spec)
    if spec.profile not in PROFILES:
        errors.append((("profile",), f"unknown profile {spec.profile!r}; use one of: {', '.join(PROFILES)}"))
    if spec.data_dir is not None:
        d = (base_dir / Path(spec.data_dir).expanduser())
        if not d.is_dir():
            errors.append((("data_dir",), f"{d} is not a directory; point it at a DecodingTrust checkout (holds data/) "
                                          "or remove data_dir to use the bundled mini set"))
    return errors


def check_models(loaded: LoadedSpec, *, download: bool = True, log: Callable[[str], None] = lambda s: None):
    """Resolve every model reference; returns {model dir name: ResolvedModel or None}.

    With download=False (dry runs) a hub id is not resolved (that would download the weights)
    and maps to None; everything else is resolved, so a bad path is still an error.
    """
    from .models.resolve import _HUB_ID, resolve_model

    root = _compose(loaded.text)
    out: dict[str, Any] = {}
    for i, m in enumerate(loaded.spec.models):
        ref = m.ref.strip()
        is_hub = not ref.startswith("embedded:") and not Path(ref).expanduser().exists() and bool(_HUB_ID.match(ref))
        if is_hub and not download:
            log(f"model {ref} is an HF hub id: not resolved in a dry run (that downloads it); the sweep resolves it first")
            out[m.dir_name] = None
            continue
        if not ref.startswith("embedded:") and not is_hub:
            p = Path(ref).expanduser()
            if not p.is_absolute():
                ref = str(loaded.base_dir / p) if (loaded.base_dir / p).exists() else ref
        try:
            out[m.dir_name] = resolve_model(ref, trust_remote_code=m.trust_remote_code, allow_pickle=m.allow_pickle)
        except ModelRefError as e:
            raise _error(loaded.source, root, ("models", i, "ref"), str(e)) from None
    return out


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def parse_spec(text: str, source: str, base_dir: Path) -> LoadedSpec:
    """YAML text -> LoadedSpec (no model resolution; see check_models). Raises SpecError."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{source}:{line}: YAML syntax: {problem}; fix the indentation or quoting there") from None
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1: spec: expected a YAML mapping with models, variants, dimensions, ...; "
                        "see docs/sweep.md for an example")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        errs = e.errors()
        loc, msg = _pydantic_message(errs[0])
        raise _error(source, root, loc, msg, len(errs) - 1) from None
    problems = _check_meaning(spec, base_dir)
    if problems:
        loc, msg = problems[0]
        raise _error(source, root, loc, msg, len(problems) - 1)
    data_dir = (base_dir / Path(spec.data_dir).expanduser()).resolve() if spec.data_dir else None
    return LoadedSpec(spec=spec, source=source, base_dir=base_dir, data_dir=data_dir, text=text)


def load_spec(name_or_path: str | Path) -> LoadedSpec:
    path = spec_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the spec ({type(e).__name__}); check the file") from None
    source = path.name if path.parent == BUILTIN_DIR else str(name_or_path)
    return parse_spec(text, source, path.parent.resolve())
