"""The bundled mini set: every file parses, and mirrors the real DecodingTrust files' names,
keys, columns and dtypes (compared against ../shared/decodingtrust when it is present)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from comptrust.data.source import BUNDLED_ROOT

SHARED = Path(__file__).parents[2] / "shared" / "decodingtrust"
FILES = sorted(p.relative_to(BUNDLED_ROOT).as_posix() for p in BUNDLED_ROOT.rglob("*")
               if p.is_file() and p.name != "README.md")


def needs_shared():
    if not (SHARED / "data").is_dir():
        pytest.skip("shared DecodingTrust data absent")


def load(path: Path) -> Any:
    """Parse one file by its kind; JSONL -> list of rows, CSV -> (header, rows)."""
    name = path.name
    if name.endswith(".jsonl"):
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if name.endswith(".json"):
        return json.loads(path.read_text(encoding="utf-8"))
    if name.endswith(".csv"):
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        return rows[0], rows[1:]
    if name.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    raise AssertionError(f"unexpected file kind: {path}")


# ---- JSON shapes: a set of (path, type) with list indices as [] and data-keyed maps as {*}


def _wild_paths(obj: Any, path: str = "", out: set[str] | None = None) -> set[str]:
    """Paths of dicts keyed by data (e.g. email -> name with thousands of keys) in the real file."""
    out = set() if out is None else out
    if isinstance(obj, dict):
        if len(obj) > 50:
            out.add(path)
            for v in list(obj.values())[:200]:
                _wild_paths(v, path + "{*}", out)
        else:
            for k, v in obj.items():
                _wild_paths(v, f"{path}.{k}", out)
    elif isinstance(obj, list):
        for v in obj[:200]:
            _wild_paths(v, path + "[]", out)
    return out


def _shape(obj: Any, wild: set[str], path: str = "", out: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    out = {} if out is None else out
    if isinstance(obj, dict):
        if path in wild:
            for v in obj.values():
                _shape(v, wild, path + "{*}", out)
        else:
            out.setdefault(path, set()).add("dict")
            for k, v in obj.items():
                _shape(v, wild, f"{path}.{k}", out)
    elif isinstance(obj, list):
        out.setdefault(path, set()).add("list")
        for v in obj:
            _shape(v, wild, path + "[]", out)
    else:
        out.setdefault(path, set()).add(type(obj).__name__)
    return out


def _compatible(ours: set[str], theirs: set[str]) -> bool:
    # an int where the benchmark has floats is still a number to every reader
    widened = set(theirs) | ({"int"} if "float" in theirs else set())
    return ours <= widened


def compare_json(ours: Any, theirs: Any, rel: str) -> None:
    wild = _wild_paths(theirs)
    s_ours, s_theirs = _shape(ours, wild), _shape(theirs, wild)
    assert set(s_ours) == set(s_theirs), (
        f"{rel}: paths differ; only ours: {sorted(set(s_ours) - set(s_theirs))[:5]}, "
        f"only real: {sorted(set(s_theirs) - set(s_ours))[:5]}")
    for p, types in s_ours.items():
        assert _compatible(types, s_theirs[p]), f"{rel}: {p} has types {types}, the real file {s_theirs[p]}"


def _column_kind(values: list[str]) -> str:
    if all(v in ("True", "False", "") for v in values):
        return "bool"
    try:
        [int(v) for v in values]
        return "int"
    except ValueError:
        return "str"


# --------------------------------------------------------------------------- tests


def test_bundled_set_is_present_and_small():
    assert (BUNDLED_ROOT / "README.md").is_file()
    readme = (BUNDLED_ROOT / "README.md").read_text(encoding="utf-8").lower()
    assert "not the benchmark" in readme and "written by this project" in readme
    total = sum(p.stat().st_size for p in BUNDLED_ROOT.rglob("*") if p.is_file())
    assert total < 300 * 1024, f"bundled set is {total} bytes"
    assert len(FILES) >= 60


@pytest.mark.parametrize("rel", FILES)
def test_every_bundled_file_parses(rel):
    obj = load(BUNDLED_ROOT / rel)
    if rel.endswith(".jsonl"):
        assert obj and all(isinstance(r, dict) for r in obj)
    elif rel.endswith(".csv"):
        header, rows = obj
        assert rows and all(len(r) == len(header) for r in rows)
    elif rel.endswith(".npy"):
        stem = rel.rsplit("/", 1)[1].removesuffix(".npy").removeprefix("gt_labels_").removeprefix("sensitive_attr_")
        rows = load(BUNDLED_ROOT / "data/fairness/fairness_data" / f"{stem}.jsonl")
        assert obj.ndim == 1 and len(obj) == len(rows)  # one label per record, as in the benchmark


def test_same_file_names_as_real_data():
    needs_shared()
    real = sorted(p.relative_to(SHARED).as_posix() for p in SHARED.rglob("*")
                  if p.is_file() and p.name != "README.md")
    assert FILES == real


@pytest.mark.parametrize("rel", FILES)
def test_schema_matches_real_file(rel):
    needs_shared()
    real_path = SHARED / rel
    if not real_path.is_file():
        pytest.skip(f"{rel} not in the shared subset")
    ours, theirs = load(BUNDLED_ROOT / rel), load(real_path)
    if rel.endswith(".jsonl"):
        compare_json(ours, theirs, rel)
    elif rel.endswith(".json"):
        compare_json(ours, theirs, rel)
    elif rel.endswith(".csv"):
        (h_ours, r_ours), (h_theirs, r_theirs) = ours, theirs
        assert h_ours == h_theirs
        for i, col in enumerate(h_theirs):
            assert _column_kind([r[i] for r in r_ours]) == _column_kind([r[i] for r in r_theirs]), col
    elif rel.endswith(".npy"):
        assert ours.dtype == theirs.dtype and ours.ndim == theirs.ndim
        assert set(np.unique(ours).tolist()) <= set(np.unique(theirs).tolist())


def _texts(rel: str, root: Path) -> set[str]:
    """The free-text fields of a file (what must be our own writing)."""
    obj = load(root / rel)
    out: set[str] = set()
    if rel.endswith("cm_test.csv"):
        header, rows = obj
        out = {r[header.index("input")] for r in rows}
    elif rel.endswith("user_prompts.csv"):
        header, rows = obj
        out = {r[header.index("stereotype_template")] for r in rows}
    elif "toxicity/user_prompts" in rel:
        out = {r["prompt"]["text"] for r in obj}
    elif rel.endswith("adv-glue/dev.json"):
        out = {v for items in obj.values() for it in items for k, v in it.items() if isinstance(v, str)}
    elif rel.endswith("ood/style.json"):
        out = {it["sentence"] for part in obj.values() for items in part.values() for it in items}
    elif rel.endswith("ood/knowledge.json"):
        out = {it["question_sentence"] for part in obj.values() for items in part.values() for it in items}
    elif rel.endswith("email2name.json"):
        out = set(obj)
    elif "fairness" in rel and rel.endswith(".jsonl"):
        out = {r["input"] for r in obj}
    elif "adv_demonstration" in rel:
        out = {r["input"] for r in obj} | {e[0] for r in obj for e in r["examples"]}
    return out


# Not checked: the system prompts (copied on purpose), the stereotype JSONL (task description +
# the user_prompts.csv statements, checked there), the shot files (keyed by email2name's people)
# and the crime files: a crime description is DT's fixed template filled with ~10 binary
# levels, so a few of our combinations coincide with the benchmark's by construction.
TEXT_FILES = [f for f in FILES if not f.endswith(".npy") and "system_prompts" not in f
              and "stereotype_bias_data" not in f and "_shot" not in f and "/crime_" not in f]


@pytest.mark.parametrize("rel", TEXT_FILES)
def test_no_benchmark_text_copied(rel):
    """Our free text shares no item with the real benchmark file (fixed instructions aside)."""
    needs_shared()
    if not (SHARED / rel).is_file():
        pytest.skip(f"{rel} not in the shared subset")
    ours = _texts(rel, BUNDLED_ROOT)
    assert ours, f"no free text found in {rel}"
    assert not ours & _texts(rel, SHARED)
