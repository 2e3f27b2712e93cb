"""Reading benchmark data files with errors that name the file and the line.

Every reader takes a BadRows tracker: with policy "fail" a malformed row raises DataError
naming file:line and the fix; with "skip" the row is dropped and counted, and the counts end
up in results.json (never silent).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from ..errors import DataError

BadRowPolicy = Literal["fail", "skip"]


@dataclass
class BadRows:
    policy: BadRowPolicy = "fail"
    skipped: dict[str, int] = field(default_factory=dict)  # file -> rows skipped
    examples: list[str] = field(default_factory=list)  # first few messages, for the report

    def bad(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        msg = f"{where}: {problem}"
        if self.policy == "fail":
            raise DataError(f"{msg} (fix the file, or pass --on-bad-row skip to skip and count such rows)")
        self.skipped[str(path)] = self.skipped.get(str(path), 0) + 1
        if len(self.examples) < 20:
            self.examples.append(msg)

    @property
    def total(self) -> int:
        return sum(self.skipped.values())


def _open_text(path: Path):
    try:
        return path.open("r", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (check --data-dir)") from None


def read_jsonl(
    path: Path,
    bad: BadRows,
    validate: Callable[[dict[str, Any]], str | None] | None = None,
) -> list[dict[str, Any]]:
    """Rows of a JSONL file. validate(row) returns a problem string or None."""
    rows: list[dict[str, Any]] = []
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    bad.bad(path, lineno, f"not valid JSON ({e.msg})")
                    continue
                if not isinstance(row, dict):
                    bad.bad(path, lineno, f"expected a JSON object, got {type(row).__name__}")
                    continue
                problem = validate(row) if validate else None
                if problem:
                    bad.bad(path, lineno, problem)
                    continue
                row["_line"] = lineno
                rows.append(row)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    if not rows and bad.policy == "fail":
        raise DataError(f"{path}: no rows (the file is empty); restore it from the benchmark data")
    return rows


def read_json(path: Path) -> Any:
    try:
        with _open_text(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); restore the file from the benchmark data") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason}); re-save it as UTF-8") from None


def read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with _open_text(path) as f:
            rows = []
            for r in csv.DictReader(f):
                rows.append(r)
            return rows
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason}); re-save it as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}); restore the file from the benchmark data") from None


def require_fields(*names: str) -> Callable[[dict[str, Any]], str | None]:
    """A validator for read_jsonl: dotted names allowed ("prompt.text")."""

    def check(row: dict[str, Any]) -> str | None:
        for name in names:
            cur: Any = row
            for part in name.split("."):
                if not isinstance(cur, dict) or part not in cur:
                    return f"row is missing the field {name!r}"
                cur = cur[part]
        return None

    return check


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_lines(path: Path) -> Iterator[str]:
    with _open_text(path) as f:
        yield from f
