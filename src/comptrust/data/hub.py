"""The HF hub dataset `AI-Secure/DecodingTrust`, materialised into the DecodingTrust directory layout.

Perspectives only ever read DT-layout files (`data/...`), so the hub is a way to *produce* such a
directory: each supported config is loaded with `datasets.load_dataset(path, config)`, its rows are
written back into the files the release branch reads, and a normal DataSource over that folder is
returned. `path` is injectable (a local folder with the hub repo's README `configs:` section works
the same way), which is how tests stand in for the hub without network.

Config -> files (protocol §4):
  toxicity            splits realtoxicityprompts.{toxic,nontoxic}, toxic.gpt3.5, toxic.gpt4
                      -> data/toxicity/user_prompts/<DT file names>.jsonl
  adv-glue-plus-plus  one split per task, a `model` column -> data/adv-glue-plus-plus/data/<model>.json
                      ({task: [rows]}, as gpt_eval.py reads them)
  ood                 splits style, knowledge, flattened with a `category` column
                      -> data/ood/style.json {train_demo, dev} and data/ood/knowledge.json {demo, test}
  stereotype          stereotype/dataset/*.jsonl|csv, raw files -> data/stereotype/dataset/ (as is)
  adv_demonstration   the raw tree adv_demonstration/** (counterfactual, spurious, backdoor jsonl)
                      -> data/adv_demonstration/** (as is)
  fairness            the raw tree fairness/fairness_data/** (jsonl + .npy labels and attributes) -> as is
  privacy             privacy/enron_data/<name>.jsonl rows {email, prompt} -> data/privacy/enron_data/<name>.json,
                      the dicts DT's load_dataset_by_name builds: email2name/context -> prompt[0][0],
                      one/two/five_shot[_non_domain] -> prompt (the [email, name] support pairs)
  machine_ethics      splits cm_train, cm_test (label is a one-element list, the text is input1)
                      -> data/machine_ethics/ethics/commonsense/cm_{train,test}.csv (label,input,is_short,edited)
Raw files come from the dataset repository itself (huggingface_hub; a local stand-in folder is
read directly), as DT main's `load_dataset(..., data_files=[path])` calls read them. MMLU is not in
this dataset: the mmlu perspective loads `cais/mmlu` itself (mmlu_source=auto|hub).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import DataError
from ..types import stable_hash
from .source import DataSource

HUB_DATASET = "AI-Secure/DecodingTrust"
SUPPORTED_CONFIGS = ("toxicity", "adv-glue-plus-plus", "ood", "stereotype", "adv_demonstration", "fairness",
                     "privacy", "machine_ethics")

_UP = "data/toxicity/user_prompts/"
TOXICITY_SPLITS = {
    "realtoxicityprompts.toxic": _UP + "toxic.jsonl",
    "realtoxicityprompts.nontoxic": _UP + "nontoxic.jsonl",
    "toxic.gpt3.5": _UP + "toxic.jsonl.gpt3.n=25.out1.split.annotated.jsonl.filtered.jsonl",
    "toxic.gpt4": _UP + "toxic.jsonl.gpt4.n=25.out1.split.annotated.jsonl.filtered.jsonl",
}
ADVGLUE_TASK_SPLITS = {"sst2": "sst2", "qqp": "qqp", "mnli": "mnli", "mnli-mm": "mnli-mm", "mnli_mm": "mnli-mm",
                       "qnli": "qnli", "rte": "rte"}
OOD_STYLE_DEV = ("base", "augment", "shake_w", "shake_p0", "shake_p0.6", "bible_p0", "bible_p0.6",
                 "romantic_p0", "romantic_p0.6", "tweet_p0", "tweet_p0.6")
OOD_KNOWLEDGE_TEST = ("qa_2020", "qa_2023")


def drop_nulls(x: Any) -> Any:
    """A hub config shares one schema across its splits, so fields a split lacks come back as None;
    DT's own files simply lack them."""
    if isinstance(x, dict):
        return {k: drop_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [drop_nulls(v) for v in x]
    return x


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def _rows(split: Any) -> list[dict[str, Any]]:
    return [drop_nulls(dict(r)) for r in split]


def materialise_toxicity(dd: Any, root: Path) -> dict[str, int]:
    out = {}
    for split, rel in TOXICITY_SPLITS.items():
        if split in dd:
            out[split] = _write_jsonl(root / rel, _rows(dd[split]))
    # DT keeps the system prompts in its source code, not on the hub; write the scored two.
    from .dt_prompts import TOXICITY_SYSTEM_PROMPTS_FILE, TOXICITY_TEMPLATES

    _write_json(root / TOXICITY_SYSTEM_PROMPTS_FILE, {
        "source": "comptrust built-in copy of DecodingTrust toxicity_prompts.PROMPTS[0] and [1]",
        "templates": [{"id": k, **v} for k, v in sorted(TOXICITY_TEMPLATES.items())],
    })
    return out


def _model_file_name(model: Any) -> str:
    name = str(model).strip().lower().replace("_", "-").replace(" ", "-")
    if not name or "/" in name or name.startswith("."):
        raise DataError(f"adv-glue-plus-plus: unusable model name {model!r} in the `model` column")
    return name


def materialise_advglue(dd: Any, root: Path) -> dict[str, int]:
    by_model: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for split, task in ADVGLUE_TASK_SPLITS.items():
        if split not in dd:
            continue
        for i, row in enumerate(_rows(dd[split])):
            if "model" not in row:
                raise DataError(f"{HUB_DATASET} adv-glue-plus-plus/{split}[{i}]: row has no `model` column; "
                                "the hub layout changed, use --data-dir with DT's adv-glue-plus-plus/data/*.json")
            model = _model_file_name(row.pop("model"))
            by_model.setdefault(model, {}).setdefault(task, []).append(row)
    counts = {}
    for model, tasks in by_model.items():
        _write_json(root / f"data/adv-glue-plus-plus/data/{model}.json", tasks)
        counts[model] = sum(len(v) for v in tasks.values())
    return counts


def materialise_ood(dd: Any, root: Path) -> dict[str, int]:
    counts = {}
    if "style" in dd:
        style: dict[str, dict[str, list]] = {"train_demo": {}, "dev": {}}
        for i, row in enumerate(_rows(dd["style"])):
            cat = row.pop("category", None)
            if cat is None:
                raise DataError(f"{HUB_DATASET} ood/style[{i}]: row has no `category`; the hub layout changed")
            item = {"sentence": row.pop("question_sentence", row.pop("sentence", None)),
                    "label": str(row.pop("answer", row.pop("label", ""))), **row}
            style["dev" if cat in OOD_STYLE_DEV else "train_demo"].setdefault(cat, []).append(item)
        _write_json(root / "data/ood/style.json", style)
        counts["style"] = len(dd["style"])
    if "knowledge" in dd:
        know: dict[str, dict[str, list]] = {"demo": {}, "test": {}}
        for i, row in enumerate(_rows(dd["knowledge"])):
            cat = row.pop("category", None)
            if cat is None:
                raise DataError(f"{HUB_DATASET} ood/knowledge[{i}]: row has no `category`; the hub layout changed")
            if cat in OOD_KNOWLEDGE_TEST:
                a = row.get("answer")
                row["answer"] = a if isinstance(a, list) else [str(a)]  # DT's local test answers are ['2']
                know["test"].setdefault(cat, []).append(row)
            else:
                know["demo"].setdefault(cat, []).append(row)
        _write_json(root / "data/ood/knowledge.json", know)
        counts["knowledge"] = len(dd["knowledge"])
    return counts


class RepoFiles:
    """The dataset repository's raw files: a local folder laid out like it, or the hub repo."""

    def __init__(self, path: str, revision: str | None = None, cache_dir: str | None = None) -> None:
        self.path, self.revision, self.cache_dir = path, revision, cache_dir
        self.local = Path(path).expanduser() if Path(path).expanduser().is_dir() else None

    def list(self, prefix: str) -> list[str]:
        if self.local is not None:
            base = self.local / prefix
            return sorted(str(p.relative_to(self.local)) for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        try:
            from huggingface_hub import HfApi

            files = HfApi().list_repo_files(self.path, repo_type="dataset", revision=self.revision)
        except Exception as e:  # network, auth, missing revision: many types
            raise DataError(f"could not list the files of {self.path} on the HF hub ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160] if str(e) else ''}); check network access, or pass "
                            "--data-dir with a DecodingTrust checkout") from None
        return sorted(f for f in files if f.startswith(prefix))

    def fetch(self, rel: str) -> Path:
        if self.local is not None:
            p = self.local / rel
            if not p.is_file():
                raise DataError(f"{self.path}: file {rel} is absent; the hub layout changed, or pass --data-dir "
                                "with a DecodingTrust checkout")
            return p
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(self.path, rel, repo_type="dataset", revision=self.revision,
                                        cache_dir=self.cache_dir))
        except Exception as e:
            raise DataError(f"could not download {rel} from {self.path} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160] if str(e) else ''}); check network access, or pass "
                            "--data-dir with a DecodingTrust checkout") from None


def _copy_tree(files: RepoFiles, prefix: str, root: Path, required: bool = True) -> dict[str, int]:
    rels = files.list(prefix)
    if not rels and required:
        raise DataError(f"{files.path}: no files under {prefix}; the hub layout changed, or pass --data-dir "
                        "with a DecodingTrust checkout")
    out = {}
    for rel in rels:
        dest = root / "data" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files.fetch(rel), dest)
        out[rel] = dest.stat().st_size
    return out


def materialise_stereotype(files: RepoFiles, root: Path) -> dict[str, int]:
    return _copy_tree(files, "stereotype/dataset/", root)


def materialise_adv_demonstration(files: RepoFiles, root: Path) -> dict[str, int]:
    return _copy_tree(files, "adv_demonstration/", root)


def materialise_fairness(files: RepoFiles, root: Path) -> dict[str, int]:
    return _copy_tree(files, "fairness/fairness_data/", root)


def _read_jsonl_file(path: Path, what: str) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{what}:{i}: not a JSON line; the hub layout changed") from None
    return rows


def materialise_privacy(files: RepoFiles, root: Path) -> dict[str, int]:
    rels = [r for r in files.list("privacy/enron_data/") if r.endswith(".jsonl")]
    if not rels:
        raise DataError(f"{files.path}: no privacy/enron_data/*.jsonl files; the hub layout changed")
    out = {}
    for rel in rels:
        name = Path(rel).stem
        scalar = "email2name" in name or "context" in name
        doc: dict[str, Any] = {}
        for i, r in enumerate(_read_jsonl_file(files.fetch(rel), rel), 1):
            try:
                doc[r["email"]] = r["prompt"][0][0] if scalar else r["prompt"]
            except (KeyError, IndexError, TypeError):
                raise DataError(f"{rel}:{i}: expected {{email, prompt}} rows as DT's load_dataset_by_name reads "
                                "them; the hub layout changed") from None
        _write_json(root / f"data/privacy/enron_data/{name}.json", doc)
        out[name] = len(doc)
    return out


ETHICS_SPLITS = {"cm_train": "cm_train.csv", "cm_test": "cm_test.csv"}


def materialise_machine_ethics(dd: Any, root: Path) -> dict[str, int]:
    import csv

    out = {}
    for split, fname in ETHICS_SPLITS.items():
        if split not in dd:
            continue
        path = root / "data/machine_ethics/ethics/commonsense" / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "input", "is_short", "edited"])
            for i, r in enumerate(_rows(dd[split])):
                label = r.get("label")
                label = label[0] if isinstance(label, list) and label else label
                text = r.get("input1", r.get("input"))
                if label is None or text is None:
                    raise DataError(f"{HUB_DATASET} machine_ethics/{split}[{i}]: no label/input1; the hub layout changed")
                w.writerow([int(label), text, bool(r.get("is_short", False)), bool(r.get("edited", False))])
                n += 1
        out[split] = n
    if "cm_test" not in out:
        raise DataError(f"{HUB_DATASET} machine_ethics has no cm_test split; the hub layout changed")
    return out


# config -> (kind, materialiser): "splits" get datasets.load_dataset(path, config); "files" get RepoFiles
MATERIALISERS: dict[str, tuple[str, Callable[[Any, Path], dict[str, int]]]] = {
    "toxicity": ("splits", materialise_toxicity),
    "adv-glue-plus-plus": ("splits", materialise_advglue),
    "ood": ("splits", materialise_ood),
    "stereotype": ("files", materialise_stereotype),
    "adv_demonstration": ("files", materialise_adv_demonstration),
    "fairness": ("files", materialise_fairness),
    "privacy": ("files", materialise_privacy),
    "machine_ethics": ("splits", materialise_machine_ethics),
}


@dataclass
class HubSource:
    """Loads `path` (the hub id, or a local stand-in) config by config into a DT-layout cache dir.

    The folder is keyed by (path, revision, configs), written to a temporary sibling first and
    renamed into place when complete, so an interrupted download never looks finished.
    """

    cache_dir: Path
    path: str = HUB_DATASET
    revision: str | None = None
    configs: tuple[str, ...] = SUPPORTED_CONFIGS
    hf_cache_dir: str | None = None  # datasets' own Arrow cache
    loader: Callable[..., Any] | None = None  # defaults to datasets.load_dataset
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cache_dir = Path(self.cache_dir).expanduser()
        unknown = [c for c in self.configs if c not in MATERIALISERS]
        if unknown:
            raise DataError(f"hub configs {unknown} are not supported here; use some of {', '.join(MATERIALISERS)} "
                            "or point --data-dir at a DecodingTrust checkout")

    @property
    def root(self) -> Path:
        key = stable_hash({"path": self.path, "revision": self.revision, "configs": sorted(self.configs)}, 16)
        return self.cache_dir / f"decodingtrust-hub-{key}"

    def _load(self, config: str) -> Any:
        load = self.loader
        if load is None:
            from datasets import load_dataset as load
        kwargs: dict[str, Any] = {}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.hf_cache_dir:
            kwargs["cache_dir"] = self.hf_cache_dir
        try:
            return load(self.path, config, **kwargs)
        except Exception as e:  # datasets raises many types (network, missing config, schema)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"could not load {self.path} config {config!r} ({type(e).__name__}: {first[:200]}); "
                            "check network access to the HF hub, or pass --data-dir with a DecodingTrust "
                            "checkout") from None

    def materialise(self, refresh: bool = False) -> Path:
        root = self.root
        marker = root / ".comptrust-hub.json"
        if marker.is_file() and not refresh:
            self.counts = json.loads(marker.read_text(encoding="utf-8")).get("counts", {})
            return root
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "data").mkdir(parents=True)
        counts = {}
        files = RepoFiles(self.path, self.revision, self.hf_cache_dir)
        for config in self.configs:
            kind, fn = MATERIALISERS[config]
            counts[config] = fn(self._load(config) if kind == "splits" else files, tmp)
        (tmp / ".comptrust-hub.json").write_text(json.dumps(
            {"path": self.path, "revision": self.revision, "counts": counts}, indent=1), encoding="utf-8")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        self.counts = counts
        return root

    def data_source(self, on_bad_row: str = "fail", refresh: bool = False) -> DataSource:
        root = self.materialise(refresh=refresh)
        ds = DataSource.from_dir(root, on_bad_row=on_bad_row)
        ds.label = f"hub:{self.path}" + (f"@{self.revision}" if self.revision else "")
        return ds
