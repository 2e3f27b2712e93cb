"""Calibration data: a source name or file -> n token sequences of at most seq_len tokens.

Sources
  bundled   prose written for this project (src/comptrust/bundled/calibration/*.txt), offline
  c4        allenai/c4 (en, first shard), as wanda/SparseGPT calibrate        -- needs the HF hub
  pile      mit-han-lab/pile-val-backup, as llm-awq calibrates                  -- needs the HF hub
  alpaca    yahma/alpaca-cleaned, as the paper's GPTQ models were calibrated    -- needs the HF hub
  PATH      a local .txt (plain text) or .jsonl ("text" field, or instruction/input/output)

Two ways to cut samples, matching the reference implementations:
  text      documents are tokenized and joined (EOS between documents), cut into consecutive
            windows of exactly seq_len tokens (wanda's C4 loader and llm-awq's Pile loader both
            use fixed-length windows), and n windows are drawn by a seed-keyed partition (see
            `seed_windows`): one fixed shuffle of the windows, seed s takes its s-th block of n,
            so seeds 0..k-1 (k = windows // n) get disjoint sets; a seed past k, where the pool
            has run out, draws n windows with random.Random(seed). When the text holds fewer
            than n windows, n seeded random window starts are drawn instead (overlapping, as
            wanda's loader allows) and a note says so;
  examples  instruction records are one sample each, truncated to seq_len, n records drawn
            with a seeded RNG (the paper's GPTQ: `random.sample(alpaca, 128)` with --seed).
With chat_template=True every sample is wrapped in the model's chat template first: an
instruction record becomes a user turn (instruction + input) and an assistant turn (output); a
text window becomes one user turn. The paper's GPTQ models were calibrated on chat-formatted
Alpaca this way.

Every set records `overlap_with_seed0`: the fraction of its source positions (windows, token
positions or records) that seed 0's set also uses (None for seed 0 itself), so a seed spread
computed from nearly identical data is visible (`OVERLAP_WARN`).

The content hash is over the exact token ids handed to the compressor, so it changes with the
source, the tokenizer, the seed, n and seq_len; it is part of the variant fingerprint.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..data.files import BadRows, read_jsonl
from ..errors import CompressionError, DataError
from ..types import stable_hash

# Above this, a seed's calibration set is mostly seed 0's data: `compress` warns (one line).
OVERLAP_WARN = 0.10
# The fixed shuffle the seed-keyed partition cuts into blocks (any constant; it is not a seed).
PARTITION_KEY = "comptrust-calibration-partition-v1"

HUB_SOURCES: dict[str, dict[str, Any]] = {
    "c4": {"path": "allenai/c4", "kwargs": {"data_files": {"train": "en/c4-train.00000-of-01024.json.gz"}, "split": "train"}},
    "pile": {"path": "mit-han-lab/pile-val-backup", "kwargs": {"split": "validation"}},
    "alpaca": {"path": "yahma/alpaca-cleaned", "kwargs": {"split": "train"}},
}


@dataclass
class CalibrationSet:
    source: str
    samples: list[list[int]]
    seq_len: int
    seed: int
    chat_template: bool
    mode: str  # text | examples
    source_sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    pool: int | None = None  # windows (text) or records (examples) the source holds
    disjoint_seeds: int | None = None  # seeds 0..disjoint_seeds-1 draw pairwise disjoint sets
    overlap_with_seed0: float | None = None  # None for seed 0

    @property
    def content_hash(self) -> str:
        return stable_hash(self.samples, n=64)

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.samples)

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "mode": self.mode, "content_hash": self.content_hash,
                "source_sha256": self.source_sha256, "n_samples": self.n_samples, "n_tokens": self.n_tokens,
                "seq_len": self.seq_len, "seed": self.seed, "chat_template": self.chat_template,
                "pool": self.pool, "disjoint_seeds": self.disjoint_seeds, "overlap_with_seed0": self.overlap_with_seed0,
                "notes": self.notes}

    def overlap_warning(self) -> str | None:
        """One line when this set shares more than OVERLAP_WARN of its data with seed 0's."""
        if self.overlap_with_seed0 is None or self.overlap_with_seed0 <= OVERLAP_WARN:
            return None
        k = self.disjoint_seeds or 0
        disjoint = f"only seeds 0-{k - 1} are disjoint" if k > 1 else "no two seeds are disjoint"
        return (f"warning: calibration seed {self.seed} shares {self.overlap_with_seed0:.0%} of its data with seed 0 "
                f"({self.pool} {'windows' if self.mode == 'text' else 'records'} in {self.source}: {disjoint} at "
                f"{self.n_samples} samples); a seed spread from these sets understates the real one: lower "
                "--n-calib/--seq-len or use a larger --calib source")

    def dataset(self):
        """A datasets.Dataset with input_ids/attention_mask, which oneshot uses without re-tokenizing."""
        from datasets import Dataset

        return Dataset.from_dict({"input_ids": self.samples, "attention_mask": [[1] * len(s) for s in self.samples]})


# ---------------------------------------------------------------------------- sources -> records


def bundled_texts() -> list[tuple[str, str]]:
    root = resources.files("comptrust") / "bundled" / "calibration"
    files = sorted((p for p in root.iterdir() if p.name.endswith(".txt")), key=lambda p: p.name)
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _record_from_row(row: dict[str, Any], path: Path) -> dict[str, str]:
    if isinstance(row.get("text"), str):
        return {"text": row["text"]}
    return {"instruction": str(row["instruction"]), "input": str(row.get("input") or ""), "output": str(row.get("output") or "")}


def _jsonl_records(path: Path) -> list[dict[str, str]]:
    def check(row: dict[str, Any]) -> str | None:
        if isinstance(row.get("text"), str) or isinstance(row.get("instruction"), str):
            return None
        return 'needs a "text" string or an alpaca "instruction" (+ "input", "output"); fix or delete the row'

    return [_record_from_row(r, path) for r in read_jsonl(path, BadRows("fail"), check)]


def load_records(calib: str) -> tuple[list[dict[str, str]], str | None]:
    """Records ({"text"} or {"instruction","input","output"}) and the source file's sha256 if any."""
    from ..data.files import file_sha256

    if calib == "bundled":
        texts = bundled_texts()
        return [{"text": t} for _, t in texts], stable_hash([[n, t] for n, t in texts], n=64)
    if calib in HUB_SOURCES:
        if not hub_reachable():
            raise CompressionError(f"could not reach the HF hub for {calib}; use --calib bundled or a local file")
        spec = HUB_SOURCES[calib]
        try:
            from datasets import load_dataset

            ds = load_dataset(spec["path"], **spec["kwargs"])
        except Exception as e:  # network, auth and format failures all land here
            raise CompressionError(
                f"could not load {spec['path']} for --calib {calib} ({type(e).__name__}); use --calib bundled or a local file"
            ) from None
        if calib == "alpaca":
            return [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r.get("output") or ""} for r in ds], None
        return [{"text": r["text"]} for r in ds], None
    path = Path(calib).expanduser()
    if not path.is_file():
        raise DataError(f"calibration file {path} does not exist; pass an existing .txt/.jsonl file or --calib bundled")
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        raise DataError(f"calibration file {path} is empty; put text in it or use --calib bundled")
    if path.suffix == ".jsonl":
        return _jsonl_records(path), file_sha256(path)
    if path.suffix in (".txt", ".md", ""):
        try:
            return [{"text": path.read_text(encoding="utf-8")}], file_sha256(path)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    raise DataError(f"calibration file {path} has suffix {path.suffix!r}; use .txt (plain text) or .jsonl")


# ---------------------------------------------------------------------------- records -> tokens


def _chat(tokenizer, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def _example_text(rec: dict[str, str], tokenizer, chat_template: bool) -> str:
    prompt = rec["instruction"] + (f"\n\n{rec['input']}" if rec.get("input") else "")
    if chat_template:
        return _chat(tokenizer, [{"role": "user", "content": prompt}, {"role": "assistant", "content": rec["output"]}])
    return f"{prompt}\n\n{rec['output']}"


def seed_windows(n_windows: int, n: int, seed: int) -> list[int]:
    """Indices of the n windows (of n_windows) that `seed` calibrates on, sorted.

    A seed-keyed partition: one fixed shuffle (PARTITION_KEY) cut into blocks of n; seed s in
    0..n_windows//n - 1 takes block s, so those seeds never share a window. A seed past the
    blocks (or negative) draws n windows with random.Random(seed): the pool has run out and any
    set reuses some earlier seed's windows."""
    if n > n_windows:
        raise ValueError(f"{n} windows asked of a pool of {n_windows}")
    k = n_windows // n
    if 0 <= seed < k:
        order = list(range(n_windows))
        random.Random(PARTITION_KEY).shuffle(order)
        return sorted(order[seed * n : (seed + 1) * n])
    return sorted(random.Random(seed).sample(range(n_windows), n))


def _shared(mine: list[int], seed0: list[int]) -> float:
    return round(len(set(mine) & set(seed0)) / max(len(set(mine)), 1), 4)


def _overlapping_starts(stream_len: int, n: int, seq_len: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return sorted(rng.randrange(0, stream_len - seq_len + 1) for _ in range(n))


def _covered(starts: list[int], seq_len: int) -> set[int]:
    return {p for s in starts for p in range(s, s + seq_len)}


def build_calibration(
    calib: str, tokenizer, *, n: int, seq_len: int, seed: int, chat_template: bool = False
) -> CalibrationSet:
    records, sha = load_records(calib)
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise CompressionError("--chat-template-calib needs a tokenizer with a chat template, and this model's has none; drop the flag")
    rng = random.Random(seed)
    source = calib if calib in ("bundled", *HUB_SOURCES) else str(Path(calib).expanduser().resolve())
    examples = [r for r in records if "instruction" in r]
    if examples:
        if len(examples) < n:
            raise CompressionError(f"calibration source {calib} has {len(examples)} examples, fewer than --n-calib {n}; lower --n-calib or add examples")
        # random.sample, as the paper's GPTQ script draws Alpaca (a 52k-record pool: seeds barely overlap)
        idx = rng.sample(range(len(examples)), n)
        overlap = None if seed == 0 else _shared(idx, random.Random(0).sample(range(len(examples)), n))
        samples = [tokenizer(_example_text(examples[i], tokenizer, chat_template), add_special_tokens=True)["input_ids"][:seq_len]
                   for i in idx]
        samples = [s for s in samples if s]
        return CalibrationSet(source, samples, seq_len, seed, chat_template, "examples", sha, pool=len(examples),
                              disjoint_seeds=len(examples) // n, overlap_with_seed0=overlap)

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for r in records:
        ids = tokenizer(r["text"], add_special_tokens=False)["input_ids"]
        if ids:
            stream.extend(ids)
            if eos is not None:
                stream.append(eos)
    notes = []
    if len(stream) < seq_len:
        raise CompressionError(
            f"calibration source {calib} has {len(stream)} tokens, fewer than one --seq-len {seq_len} window; "
            "lower --seq-len or use a larger source"
        )
    if n > len(stream) - seq_len + 1:
        # fewer distinct windows than samples asked for: the set would repeat windows, and GPTQ/AWQ
        # would spend the full time calibrating on a few tokens; refuse before any model work
        raise CompressionError(
            f"calibration source {calib} has {len(stream)} tokens: at --seq-len {seq_len} only "
            f"{len(stream) - seq_len + 1} distinct windows exist, fewer than --n-calib {n} (each token would be "
            f"used about {n * seq_len / len(stream):.0f} times); lower --n-calib, or use a larger source (e.g. --calib bundled)"
        )
    windows = [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]
    if len(windows) >= n:
        picked = seed_windows(len(windows), n, seed)
        samples = [windows[i] for i in picked]
        overlap = None if seed == 0 else _shared(picked, seed_windows(len(windows), n, 0))
        disjoint = len(windows) // n
    else:
        # Too little text for n disjoint windows: draw n seeded random window starts instead, as
        # wanda's C4 loader does (windows may overlap). Recorded, so the overlap is never hidden;
        # the overlap with seed 0 is then over token positions.
        starts = _overlapping_starts(len(stream), n, seq_len, seed)
        samples = [stream[i : i + seq_len] for i in starts]
        notes.append(f"source has {len(stream)} tokens < {n} x {seq_len}: {n} random (overlapping) windows drawn")
        mine = _covered(starts, seq_len)
        overlap = None if seed == 0 else round(
            len(mine & _covered(_overlapping_starts(len(stream), n, seq_len, 0), seq_len)) / len(mine), 4)
        disjoint = 0
    if chat_template:
        texts = [tokenizer.decode(s) for s in samples]
        samples = [tokenizer(_chat(tokenizer, [{"role": "user", "content": t}]), add_special_tokens=True)["input_ids"][:seq_len] for t in texts]
        notes.append("text windows wrapped as one user turn of the chat template, then truncated to seq_len")
    return CalibrationSet(source, samples, seq_len, seed, chat_template, "text", sha, notes, pool=len(windows),
                          disjoint_seeds=disjoint, overlap_with_seed0=overlap)
