"""Reading run directories (results.json + samples/*.jsonl) with one-line errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import ComptrustError, DataError
from ..results_schema import SUPPORTED_SCHEMA_VERSIONS, RunResults, SampleRecord

RESULTS_FILE = "results.json"
SAMPLES_DIR = "samples"


class RunDirError(ComptrustError):
    """A run directory is missing or its files are unreadable."""


@dataclass
class LoadedRun:
    dir: Path
    results: RunResults
    _samples: dict[str, list[SampleRecord] | None] = field(default_factory=dict, repr=False)
    key: str = ""  # unique among the runs of one report (run ids are dir names, so may repeat)

    @property
    def run_id(self) -> str:
        return self.key or self.results.run_id

    def samples(self, dimension: str) -> list[SampleRecord] | None:
        """The per-request records of one dimension, or None when the file is absent."""
        if dimension not in self._samples:
            self._samples[dimension] = read_samples(self.dir / SAMPLES_DIR / f"{dimension}.jsonl")
        return self._samples[dimension]


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


def read_results(path: Path) -> RunResults:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunDirError(
            f"{path}: not found; pass a run directory written by `comptrust eval` (it holds {RESULTS_FILE})"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: cannot read ({e}); re-run `comptrust eval` to rewrite it") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunDirError(
            f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg}); re-run `comptrust eval` to rewrite it"
        ) from None
    if not isinstance(raw, dict):
        raise RunDirError(f"{path}: expected a JSON object; re-run `comptrust eval` to rewrite it")
    version = raw.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise RunDirError(
            f"{path}: schema_version {version!r} is not supported (this comptrust reads "
            f"{', '.join(SUPPORTED_SCHEMA_VERSIONS)}); re-run `comptrust eval` with this version, or use a "
            f"comptrust that writes {version!r}"
        )
    try:
        return RunResults.model_validate(raw)
    except ValidationError as e:
        raise RunDirError(f"{path}: {_first_error(e)}; re-run `comptrust eval` to rewrite it") from None


def read_samples(path: Path) -> list[SampleRecord] | None:
    if not path.is_file():
        return None
    out: list[SampleRecord] = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(SampleRecord.model_validate_json(line))
            except ValidationError as e:
                raise DataError(
                    f"{path}:{lineno}: bad sample record ({_first_error(e)}); re-run `comptrust eval` to rewrite it"
                ) from None
    return out


def load_run(run_dir: str | Path) -> LoadedRun:
    d = Path(run_dir).expanduser()
    if not d.is_dir():
        raise RunDirError(f"{d}: not a directory; pass a run directory written by `comptrust eval`")
    return LoadedRun(dir=d, results=read_results(d / RESULTS_FILE))


def load_runs(run_dirs: list[str | Path]) -> list[LoadedRun]:
    runs = [load_run(d) for d in run_dirs]
    seen: dict[str, Path] = {}
    for r in runs:
        key = str(r.dir.resolve())
        if key in seen:
            raise RunDirError(f"{r.dir}: given twice; pass each run directory once")
        seen[key] = r.dir
    unique_keys(runs)
    return runs


def unique_keys(runs: list[LoadedRun]) -> None:
    """Give runs that share a run_id (e.g. a/dense and b/dense) distinct keys: the run_id
    followed by as many parent folder names as needed."""
    for r in runs:
        r.key = r.results.run_id
    for depth in range(1, 64):
        counts: dict[str, int] = {}
        for r in runs:
            counts[r.key] = counts.get(r.key, 0) + 1
        dups = [r for r in runs if counts[r.key] > 1]
        if not dups:
            return
        for r in dups:
            parts = r.dir.resolve().parts
            r.key = f"{r.results.run_id}@" + "/".join(parts[max(1, len(parts) - 1 - depth):-1] or ("?",))
    for i, r in enumerate(runs):  # identical paths cannot happen (checked above); belt and braces
        r.key = f"{r.results.run_id}#{i}"


def is_run_dir(path: Path) -> bool:
    """True when `path` holds a run's results.json (used to refuse overwriting it)."""
    p = path / RESULTS_FILE
    if not p.is_file():
        return False
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and "model" in raw and "dimensions" in raw
