"""manifest.json: what a variant directory is, how it was made, and what was measured in it.

models.resolve recognises a variant by this file and takes its cache identity from the
top-level `fingerprint`; the fields below are a stable, versioned contract (bump
MANIFEST_VERSION when one changes meaning).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import CompressionError

# 2: bits_per_param_overall over the model's real parameters (v1 counted scale/zero-point/shape
#    tensors as parameters); loadable_by; calibration overlap_with_seed0/pool/disjoint_seeds;
#    recipe complete with defaults; default name carries the calibration (source, n x seq_len).
MANIFEST_VERSION = 2
MANIFEST_NAME = "manifest.json"


class BaseRef(BaseModel):
    ref: str
    fingerprint: str
    display_name: str | None = None


class GroupSize(BaseModel):
    requested: int | None  # None for pruning methods
    effective: int | None
    reason: str | None = None  # why effective != requested


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest_version: int = MANIFEST_VERSION
    name: str
    fingerprint: str
    base: BaseRef
    method: str
    kind: str  # quantization | pruning
    bits: int | None
    symmetric: bool | None
    sparsity: float | None  # requested; measured values are in `measured`
    structure: str | None
    group_size: GroupSize
    bits_per_weight: float  # measured, quantized/pruned Linear layers incl. scales and zero points
    size_bytes: int  # measured: every file of the checkpoint directory except manifest.json
    recipe: dict[str, Any]
    recipe_yaml: str
    calibration: dict[str, Any] | None
    seed: int | None  # None for methods without calibration
    request: dict[str, Any]  # the CompressSpec as given (after validation)
    versions: dict[str, str]
    wall_time_s: float
    created: str
    storage_format: str  # e.g. pack-quantized, dense
    # engines that load this checkpoint; vLLM's int kernels take 4/8-bit weights only (None: a v1
    # manifest, written before this was recorded)
    loadable_by: list[str] | None = None
    measured: dict[str, Any]
    notes: list[str] = Field(default_factory=list)

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, model_dir: Path) -> "Manifest":
        path = Path(model_dir) / MANIFEST_NAME
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CompressionError(f"{model_dir} is not a comptrust variant (no {MANIFEST_NAME}); build it with `comptrust compress`") from None
        except (json.JSONDecodeError, ValueError) as e:
            raise CompressionError(f"{path}: unreadable manifest ({str(e).splitlines()[0][:120]}); delete the directory and rebuild the variant") from None


def library_versions() -> dict[str, str]:
    """Part of the variant fingerprint: keep the package list and the 'absent' marker stable."""
    from ..versions import library_versions as versions

    return versions(("comptrust", "llmcompressor", "compressed-tensors", "transformers", "torch"), absent="absent")
