"""--data-dir hub for every dimension: a local folder shaped like AI-Secure/DecodingTrust (raw
trees for stereotype, adversarial demonstrations and fairness; privacy as {email, prompt} JSON
lines; machine ethics as cm_train/cm_test splits with one-element label lists and `input1`) is
built from the bundled mini set, materialised by HubSource, and every perspective must build the
same requests from it as from the bundled set itself. MMLU comes from `cais/mmlu`, through the
mmlu perspective's injectable hub loader."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from comptrust.data.hub import HubSource
from comptrust.data.source import BUNDLED_ROOT, DataSource
from comptrust.errors import DataError
from comptrust.perspectives.base import PerspectiveContext, get_perspective
from comptrust.profiles import get_profile

README = """---
configs:
- config_name: machine_ethics
  data_files:
  - split: cm_train
    path: machine_ethics/cm_train.jsonl
  - split: cm_test
    path: machine_ethics/cm_test.jsonl
---
"""
B = BUNDLED_ROOT / "data"


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _ethics_rows(csv_path: Path) -> list[dict]:
    with csv_path.open(encoding="utf-8") as f:
        return [{"label": [int(r["label"])], "input1": r["input"], "input2": None, "is_short": r["is_short"] == "True",
                 "edited": r.get("edited") == "True"} for r in csv.DictReader(f)]


@pytest.fixture()
def hub_dir(tmp_path: Path) -> Path:
    d = tmp_path / "hub"
    d.mkdir()
    (d / "README.md").write_text(README, encoding="utf-8")
    for tree in ("stereotype/dataset", "adv_demonstration", "fairness/fairness_data"):
        shutil.copytree(B / tree, d / tree)
    for f in (B / "privacy/enron_data").glob("*.json"):
        doc = json.loads(f.read_text())
        scalar = f.stem == "email2name"
        _jsonl(d / f"privacy/enron_data/{f.stem}.jsonl",
               [{"email": e, "prompt": [[v]] if scalar else v} for e, v in doc.items()])
    test = _ethics_rows(B / "machine_ethics/ethics/commonsense/cm_test.csv")
    _jsonl(d / "machine_ethics/cm_test.jsonl", test)
    _jsonl(d / "machine_ethics/cm_train.jsonl", test[:40])  # the bundled set has no cm_train: any rows do
    return d


CONFIGS = ("stereotype", "adv_demonstration", "fairness", "privacy", "machine_ethics")


def _requests(name: str, data: DataSource):
    ctx = PerspectiveContext(data=data, profile=get_profile("smoke"))
    return [(r.id, r.messages, r.meta.get("label")) for r in get_perspective(name).requests(ctx)]


def test_hub_materialises_every_file_dimension(hub_dir, tmp_path):
    hub = HubSource(cache_dir=tmp_path / "cache", path=str(hub_dir), configs=CONFIGS, hf_cache_dir=str(tmp_path / "hf"))
    ds = hub.data_source()
    root = ds.root
    # raw trees arrive byte for byte; privacy as the dicts DT's load_dataset_by_name builds
    for rel in ("stereotype/dataset/stereotype_bias_data.jsonl", "fairness/fairness_data/gt_labels_crime_0_300_test_base_rate_0.5.npy",
                "adv_demonstration/counterfactual/snli_premise_cf/42.jsonl"):
        assert (root / "data" / rel).read_bytes() == (B / rel).read_bytes()
    for f in (B / "privacy/enron_data").glob("*.json"):
        assert json.loads((root / "data/privacy/enron_data" / f.name).read_text()) == json.loads(f.read_text())
    assert (root / "data/machine_ethics/ethics/commonsense/cm_train.csv").is_file()
    assert hub.counts["machine_ethics"] == {"cm_train": 40, "cm_test": len(_ethics_rows(B / "machine_ethics/ethics/commonsense/cm_test.csv"))}
    bundled = DataSource.bundled()
    for name in ("stereotype", "adv_demonstration", "fairness", "privacy"):
        assert _requests(name, ds) == _requests(name, bundled), name
    me = _requests("machine_ethics", ds)
    assert me and {i for i, _, _ in me} >= {i for i, _, _ in _requests("machine_ethics", bundled)}


def test_hub_layout_change_is_one_clear_error(hub_dir, tmp_path):
    shutil.rmtree(hub_dir / "adv_demonstration")
    hub = HubSource(cache_dir=tmp_path / "c", path=str(hub_dir), configs=("adv_demonstration",))
    with pytest.raises(DataError, match=r"no files under adv_demonstration/.*--data-dir"):
        hub.materialise()
    assert not hub.root.exists()
    (hub_dir / "privacy/enron_data/email2name.jsonl").write_text('{"mail": "x"}\n')
    with pytest.raises(DataError, match=r"email2name.jsonl:1: expected \{email, prompt\}"):
        HubSource(cache_dir=tmp_path / "d", path=str(hub_dir), configs=("privacy",)).materialise()


def test_mmlu_from_cais_mmlu_stand_in():
    rows = {"test": [{"question": "2+2?", "subject": "elementary_mathematics", "choices": ["1", "2", "3", "4"], "answer": 3}] * 2,
            "dev": [{"question": f"d{i}?", "subject": "elementary_mathematics", "choices": ["a", "b", "c", "d"], "answer": i % 4}
                    for i in range(5)]}
    calls = []

    def loader(name, config, split):
        calls.append((name, config, split))
        return rows[split]

    ctx = PerspectiveContext(data=DataSource.from_dir(BUNDLED_ROOT), profile=get_profile("smoke"))  # not 'bundled-mini'
    P = get_perspective("mmlu", {"mmlu_source": "hub"}, hub_loader=loader)
    reqs = P.requests(ctx)
    assert calls and calls[0][:2] == ("cais/mmlu", "all")
    assert reqs and "d4?" in reqs[0].messages[0].content
