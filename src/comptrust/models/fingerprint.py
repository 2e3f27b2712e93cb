"""Model fingerprints: identify the weights, not the name.

A fingerprint hashes config.json plus, per weight file, its name, size and contents. Files up to
FULL_HASH_LIMIT bytes in total are hashed whole; for larger checkpoints (a 13B model is 26 GB)
each safetensors file contributes its header (tensor names, dtypes, shapes, offsets) and the
sha256 of its first and last 8 MiB, which changes whenever any quantized/pruned layer does in
practice while staying fast. The method used is part of the hashed record.

Whole-file hashes are memoised by (path, size, mtime, ctime, inode) in the comptrust cache
(`fingerprint-memo.json`, $COMPTRUST_FINGERPRINT_MEMO overrides), as git's index does: a file is
re-hashed whenever any of those changes (ctime changes on every write and cannot be set back),
so resolving the same 540 MB checkpoint twice reads it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..types import stable_hash

FULL_HASH_LIMIT = 2 << 30  # 2 GiB
EDGE = 8 << 20

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def _sha(path: Path, start: int = 0, length: int | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        remaining = length
        while True:
            n = 1 << 20 if remaining is None else min(1 << 20, remaining)
            if n == 0:
                break
            chunk = f.read(n)
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return h.hexdigest()


def _memo_path() -> Path:
    env = os.environ.get("COMPTRUST_FINGERPRINT_MEMO")
    if env:
        return Path(env)
    return Path(os.environ.get("COMPTRUST_CACHE") or Path.home() / ".cache" / "comptrust") / "fingerprint-memo.json"


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def _sha_file(path: Path) -> str:
    """sha256 of the whole file, memoised by its stat (see the module docstring). Best effort:
    an unreadable or unwritable memo only costs the hash."""
    memo_path, key = _memo_path(), _stat_key(path)
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo, dict) and isinstance(memo.get(key), str):
        return memo[key]
    digest = _sha(path)
    memo = memo if isinstance(memo, dict) else {}
    memo[key] = digest
    if len(memo) > 4096:  # keep it small: drop the oldest entries
        memo = dict(list(memo.items())[-4096:])
    try:
        from ..atomic import atomic_write_text

        memo_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo_path, json.dumps(memo), "fingerprint.memo.rename")
    except OSError:
        pass
    return digest


def _safetensors_header(path: Path) -> str:
    from ..st_header import read_header

    return hashlib.sha256(read_header(path)[0]).hexdigest()


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def fingerprint_dir(model_dir: Path) -> str:
    model_dir = Path(model_dir)
    files = weight_files(model_dir)
    total = sum(p.stat().st_size for p in files)
    full = total <= FULL_HASH_LIMIT
    record: dict = {"method": "full" if full else "header+edges", "files": []}
    cfg = model_dir / "config.json"
    if cfg.is_file():
        record["config"] = stable_hash(json.loads(cfg.read_text()), 64)
    for p in files:
        size = p.stat().st_size
        entry = {"name": p.name, "size": size}
        if full:
            entry["sha256"] = _sha_file(p)
        else:
            if p.suffix == ".safetensors":
                entry["header"] = _safetensors_header(p)
            entry["head"] = _sha(p, 0, EDGE)
            entry["tail"] = _sha(p, max(0, size - EDGE), EDGE)
        record["files"].append(entry)
    return stable_hash(record, 32)


def fingerprint_file(path: Path) -> str:
    return stable_hash({"method": "full", "name": path.name, "sha256": _sha_file(path)}, 32)
