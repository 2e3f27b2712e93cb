"""MMLU questions: loading (HF hub, local directories, the bundled fixture) and Hendrycks prompts.

Local layouts, detected in this order inside the given directory:
  csv      Hendrycks' release: data/{dev,test}/{subject}_{dev,test}.csv (or {dev,test}/ at the top);
           no header; columns question, A, B, C, D, answer letter
  jsonl    {dev,test}.jsonl (or {dev,test}/*.jsonl); rows {question, subject, choices[4], answer}
           with answer an index 0-3 or a letter A-D (the HF `cais/mmlu` row schema)
  parquet  the HF hub snapshot layout: all/{dev,test}-*.parquet (read through `datasets`)
The hub source is `cais/mmlu`, config "all", splits dev and test, through datasets.load_dataset
(injectable, so tests run on local stand-ins).

The prompt is Hendrycks' `gen_prompt` + `format_example` (the format comp-trust's
mmlu_autogptq.py uses): a subject header, k solved dev questions, then the test question ending
in "Answer:".
"""

from __future__ import annotations

import contextlib

import csv
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from ..data.files import BadRows, file_sha256, read_jsonl
from ..errors import DataError

LETTERS = ("A", "B", "C", "D")
HUB_ID = ("cais/mmlu", "all")
BUNDLED_MMLU = Path(str(resources.files("comptrust") / "bundled" / "mmlu"))

# Subject -> category, as lm-evaluation-harness groups MMLU (tasks/mmlu/_generate_configs.py), so
# our category accuracies line up with lm-eval's mmlu_stem / _humanities / _social_sciences / _other.
CATEGORIES: dict[str, str] = {
    "abstract_algebra": "stem",
    "anatomy": "stem",
    "astronomy": "stem",
    "business_ethics": "other",
    "clinical_knowledge": "other",
    "college_biology": "stem",
    "college_chemistry": "stem",
    "college_computer_science": "stem",
    "college_mathematics": "stem",
    "college_medicine": "other",
    "college_physics": "stem",
    "computer_security": "stem",
    "conceptual_physics": "stem",
    "econometrics": "social_sciences",
    "electrical_engineering": "stem",
    "elementary_mathematics": "stem",
    "formal_logic": "humanities",
    "global_facts": "other",
    "high_school_biology": "stem",
    "high_school_chemistry": "stem",
    "high_school_computer_science": "stem",
    "high_school_european_history": "humanities",
    "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences",
    "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem",
    "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem",
    "high_school_psychology": "social_sciences",
    "high_school_statistics": "stem",
    "high_school_us_history": "humanities",
    "high_school_world_history": "humanities",
    "human_aging": "other",
    "human_sexuality": "social_sciences",
    "international_law": "humanities",
    "jurisprudence": "humanities",
    "logical_fallacies": "humanities",
    "machine_learning": "stem",
    "management": "other",
    "marketing": "other",
    "medical_genetics": "other",
    "miscellaneous": "other",
    "moral_disputes": "humanities",
    "moral_scenarios": "humanities",
    "nutrition": "other",
    "philosophy": "humanities",
    "prehistory": "humanities",
    "professional_accounting": "other",
    "professional_law": "humanities",
    "professional_medicine": "other",
    "professional_psychology": "social_sciences",
    "public_relations": "social_sciences",
    "security_studies": "social_sciences",
    "sociology": "social_sciences",
    "us_foreign_policy": "social_sciences",
    "virology": "other",
    "world_religions": "humanities",
}


@dataclass(frozen=True)
class MMLUQuestion:
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int  # index into choices
    where: str = ""  # file:line or hub:split:index, for messages

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


@dataclass
class MMLUData:
    dev: dict[str, list[MMLUQuestion]]  # subject -> few-shot pool, in file order
    test: list[MMLUQuestion]
    source: str  # "bundled", "dir:/path", "hub:cais/mmlu/all"
    files: dict[str, str] = field(default_factory=dict)  # file -> sha256 (local sources)

    @property
    def subjects(self) -> list[str]:
        return sorted({q.subject for q in self.test})


# ---------------------------------------------------------------- prompts

def format_subject(subject: str) -> str:
    return " ".join(subject.split("_"))


def format_example(q: MMLUQuestion, include_answer: bool) -> str:
    text = q.question
    for letter, choice in zip(LETTERS, q.choices):
        text += f"\n{letter}. {choice}"
    text += "\nAnswer:"
    if include_answer:
        text += f" {q.answer_letter}\n\n"
    return text


def header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"


def build_prompt(test_q: MMLUQuestion, demos: Iterable[MMLUQuestion]) -> str:
    return header(test_q.subject) + "".join(format_example(d, True) for d in demos) + format_example(test_q, False)


# ---------------------------------------------------------------- parsing rows

def _answer_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 3 else None
    if isinstance(value, str):
        v = value.strip()
        if v.upper() in LETTERS and len(v) == 1:
            return LETTERS.index(v.upper())
        if v in ("0", "1", "2", "3"):
            return int(v)
    return None


def _row_problem(row: dict[str, Any], need_subject: bool) -> str | None:
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        return "row has no non-empty 'question' string"
    ch = row.get("choices")
    if not isinstance(ch, list) or len(ch) != 4 or not all(isinstance(c, (str, int, float)) for c in ch):
        return "'choices' must be a list of exactly 4 strings"
    if _answer_index(row.get("answer")) is None:
        return f"'answer' must be 0-3 or A-D, got {row.get('answer')!r}"
    if need_subject and (not isinstance(row.get("subject"), str) or not row["subject"].strip()):
        return "row has no 'subject' string (e.g. \"high_school_geography\")"
    return None


def _from_row(row: dict[str, Any], subject: str | None, where: str) -> MMLUQuestion:
    return MMLUQuestion(
        subject=(subject or row["subject"]).strip(),
        question=row["question"],
        choices=tuple(str(c) for c in row["choices"]),  # type: ignore[arg-type]
        answer=_answer_index(row["answer"]),  # type: ignore[arg-type]
        where=where,
    )


def read_hendrycks_csv(path: Path, subject: str, bad: BadRows) -> list[MMLUQuestion]:
    out: list[MMLUQuestion] = []
    try:
        with path.open("r", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            line = 1
            for rec in reader:
                start, line = line, reader.line_num + 1  # a quoted field may span lines
                if not rec or all(not c.strip() for c in rec):
                    continue
                if len(rec) != 6:
                    bad.bad(path, start, f"expected 6 columns (question, A, B, C, D, answer letter), got {len(rec)}")
                    continue
                row = {"question": rec[0], "choices": rec[1:5], "answer": rec[5]}
                problem = _row_problem(row, need_subject=False)
                if problem:
                    bad.bad(path, start, problem)
                    continue
                out.append(_from_row(row, subject, f"{path}:{start}"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e}); fix the quoting or restore the file from the MMLU release") from None
    return out


def _read_jsonl_questions(path: Path, bad: BadRows) -> list[MMLUQuestion]:
    rows = read_jsonl(path, bad, validate=lambda r: _row_problem(r, need_subject=True))
    return [_from_row(r, None, f"{path}:{r['_line']}") for r in rows]


# ---------------------------------------------------------------- sources

def _group_dev(qs: Iterable[MMLUQuestion]) -> dict[str, list[MMLUQuestion]]:
    dev: dict[str, list[MMLUQuestion]] = {}
    for q in qs:
        dev.setdefault(q.subject, []).append(q)
    return dev


def _csv_root(root: Path) -> Path | None:
    for cand in (root / "data", root):
        if (cand / "test").is_dir() and any((cand / "test").glob("*_test.csv")):
            return cand
    return None


def load_local(root: str | Path, bad: BadRows | None = None, label: str | None = None) -> MMLUData:
    """MMLU from a local directory in the csv, jsonl or parquet layout (see module doc)."""
    bad = bad or BadRows()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"MMLU dir {root} does not exist; pass a directory holding data/{{dev,test}}/*.csv, {{dev,test}}.jsonl or all/*.parquet")
    files: dict[str, str] = {}
    label = label or f"dir:{root}"

    csv_root = _csv_root(root)
    if csv_root is not None:
        test: list[MMLUQuestion] = []
        dev_qs: list[MMLUQuestion] = []
        for split, acc in (("test", test), ("dev", dev_qs)):
            for p in sorted((csv_root / split).glob(f"*_{split}.csv")):
                subject = p.name[: -len(f"_{split}.csv")]
                acc.extend(read_hendrycks_csv(p, subject, bad))
                files[str(p)] = file_sha256(p)
        return MMLUData(_group_dev(dev_qs), test, label, files)

    def jsonl_files(split: str) -> list[Path]:
        one = root / f"{split}.jsonl"
        return [one] if one.is_file() else sorted((root / split).glob("*.jsonl")) if (root / split).is_dir() else []

    if jsonl_files("test"):
        test, dev_qs = [], []
        for split, acc in (("test", test), ("dev", dev_qs)):
            for p in jsonl_files(split):
                acc.extend(_read_jsonl_questions(p, bad))
                files[str(p)] = file_sha256(p)
        return MMLUData(_group_dev(dev_qs), test, label, files)

    pq = root / "all" if (root / "all").is_dir() else root
    if any(pq.glob("test-*.parquet")):
        from datasets import load_dataset

        splits = {}
        for split in ("test", "dev"):
            paths = sorted(pq.glob(f"{split}-*.parquet"))
            for p in paths:
                files[str(p)] = file_sha256(p)
            if paths:
                splits[split] = load_dataset("parquet", data_files=[str(p) for p in paths], split="train")
        return _from_hf_splits(splits, label, bad, files)

    raise DataError(
        f"{root}: no MMLU files found; expected data/test/<subject>_test.csv (Hendrycks), "
        "test.jsonl with question/subject/choices/answer rows, or all/test-*.parquet"
    )


def _from_hf_splits(splits: dict[str, Any], label: str, bad: BadRows, files: dict[str, str] | None = None) -> MMLUData:
    out: dict[str, list[MMLUQuestion]] = {"test": [], "dev": []}
    for split, ds in splits.items():
        for i, row in enumerate(ds):
            where = f"{label}:{split}:{i}"
            row = dict(row)
            if isinstance(row.get("choices"), tuple):
                row["choices"] = list(row["choices"])
            problem = _row_problem(row, need_subject=True)
            if problem:
                bad.bad(where, None, problem)
                continue
            out[split].append(_from_row(row, None, where))
    return MMLUData(_group_dev(out["dev"]), out["test"], label, files or {})


def load_hub(loader: Callable[..., Any] | None = None, bad: BadRows | None = None) -> MMLUData:
    """cais/mmlu (config "all") dev + test through datasets.load_dataset (or `loader`)."""
    bad = bad or BadRows()
    offline = contextlib.nullcontext(True)
    if loader is None:
        from datasets import load_dataset as loader  # type: ignore[no-redef]

        from ..hubnet import offline_unless_reachable

        offline = offline_unless_reachable()  # no minute of retry lines when the hub is unreachable
    name, config = HUB_ID
    splits = {}
    with offline as reachable:
        for split in ("test", "dev"):
            try:
                splits[split] = loader(name, config, split=split)
            except Exception as e:  # offline, missing cache, hub errors: many exception types
                msg = str(e).splitlines()[0][:160] if str(e) else ""
                where = "the HF hub" if reachable else "the datasets cache (the HF hub is unreachable)"
                raise DataError(
                    f"could not load {name} ({config}, {split}) from {where} ({type(e).__name__}: {msg}); "
                    "connect to the hub or warm the datasets cache, or set the MMLU option mmlu_source to a local "
                    "directory (Hendrycks CSV / jsonl layout) or to 'bundled'"
                ) from None
    return _from_hf_splits(splits, f"hub:{name}/{config}", bad)


def load_bundled(bad: BadRows | None = None) -> MMLUData:
    data = load_local(BUNDLED_MMLU, bad, label="bundled")
    return data
