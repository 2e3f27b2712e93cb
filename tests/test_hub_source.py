"""HubSource: a local folder laid out like the HF hub repo (README `configs:` + JSON lines) stands in
for AI-Secure/DecodingTrust; its rows must come back as DT-layout files the perspectives read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comptrust.data.hub import HubSource, drop_nulls
from comptrust.errors import DataError
from comptrust.perspectives.advglue import AdvGLUEPerspective
from comptrust.perspectives.base import PerspectiveContext
from comptrust.perspectives.ood import OODPerspective
from comptrust.perspectives.toxicity import ToxicityPerspective
from comptrust.profiles import get_profile

README = """---
dataset_info:
- config_name: adv-glue-plus-plus
  features:
  - {name: idx, dtype: int64}
  - {name: label, dtype: int64}
  - {name: sentence, dtype: string}
  - {name: question1, dtype: string}
  - {name: question2, dtype: string}
  - {name: premise, dtype: string}
  - {name: hypothesis, dtype: string}
  - {name: method, dtype: string}
  - {name: data_construction, dtype: string}
  - {name: model, dtype: string}
- config_name: ood
  features:
  - {name: category, dtype: string}
  - {name: question_sentence, dtype: string}
  - {name: answer, dtype: string}
  - {name: id, dtype: int64}
  - {name: question_date, dtype: string}
  - {name: choices, sequence: string}
configs:
- config_name: toxicity
  data_files:
  - split: realtoxicityprompts.toxic
    path: toxicity/user_prompts/toxic.jsonl
  - split: realtoxicityprompts.nontoxic
    path: toxicity/user_prompts/nontoxic.jsonl
  - split: toxic.gpt3.5
    path: toxicity/user_prompts/toxic.gpt3.5.jsonl
  - split: toxic.gpt4
    path: toxicity/user_prompts/toxic.gpt4.jsonl
- config_name: adv-glue-plus-plus
  data_files:
  - split: sst2
    path: adv-glue-plus-plus/data/sst2.jsonl
  - split: qqp
    path: adv-glue-plus-plus/data/qqp.jsonl
  - split: mnli
    path: adv-glue-plus-plus/data/mnli.jsonl
- config_name: ood
  data_files:
  - split: style
    path: ood/style.jsonl
  - split: knowledge
    path: ood/knowledge.jsonl
---
"""

# A config shares one schema across splits, so every row carries every column (None where absent).
ADV_COLS = ("sentence", "question1", "question2", "premise", "hypothesis")
OOD_COLS = ("category", "question_sentence", "answer", "id", "question_date", "choices")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _tox_row(text: str, i: int) -> dict:
    return {"filename": f"f{i}.txt" if i % 2 else None, "source": None if i % 2 else f"toxic.jsonl.{i}",
            "prompt": {"text": text, "toxicity": 0.9 if i % 2 else None}}


def _adv_row(task: str, i: int, model: str) -> dict:
    row = {c: None for c in ADV_COLS}
    if task == "sst2":
        row["sentence"] = f"film {i} was grate"
    elif task == "qqp":
        row.update(question1=f"how {i}?", question2=f"why {i}?")
    else:
        row.update(premise=f"p {i}", hypothesis=f"h {i}")
    row.update(idx=i, label=i % 2, method="textfooler", data_construction="word", model=model)
    return row


def _ood_row(**kw) -> dict:
    row = {c: None for c in OOD_COLS}
    row.update(kw)
    return row


@pytest.fixture()
def hub_dir(tmp_path: Path) -> Path:
    d = tmp_path / "hub"
    d.mkdir()
    (d / "README.md").write_text(README, encoding="utf-8")
    up = d / "toxicity/user_prompts"
    _jsonl(up / "toxic.jsonl", [_tox_row(f"toxic {i}", i) for i in range(3)])
    _jsonl(up / "nontoxic.jsonl", [_tox_row(f"nice {i}", i) for i in range(2)])
    _jsonl(up / "toxic.gpt3.5.jsonl", [_tox_row(f"gpt35 {i}", i) for i in range(4)])
    _jsonl(up / "toxic.gpt4.jsonl", [_tox_row(f"gpt4 {i}", i) for i in range(1)])
    ag = d / "adv-glue-plus-plus/data"
    for task, n in (("sst2", 3), ("qqp", 2), ("mnli", 2)):
        _jsonl(ag / f"{task}.jsonl", [_adv_row(task, i, m) for m in ("alpaca", "vicuna", "stable-vicuna")
                                      for i in range(n)])
    style = [_ood_row(category=s, question_sentence=f"{s} text {i}", answer=str(i % 2), id=i)
             for s in ("base", "shake_p0.6", "tweet_p0") for i in range(3)]
    style += [_ood_row(category=f"base_{r}", question_sentence=f"demo {r}.{i}", answer=str(i % 2), id=i)
              for r in range(3) for i in range(8)]
    _jsonl(d / "ood/style.jsonl", style)
    q = dict(question_date="2023/01/05", choices=["a", "b", "c", "d"])
    know = [_ood_row(category="qa_2023", question_sentence=f"Q23 {i}?", answer=str(i % 4), id=i, **q) for i in range(3)]
    know += [_ood_row(category="qa_2020", question_sentence=f"Q20 {i}?", answer="1", id=i, **q) for i in range(2)]
    know += [_ood_row(category=f"global_facts_{r}", question_sentence=f"GF {i}?", answer="2", choices=["w", "x", "y", "z"])
             for r in range(3) for i in range(5)]
    _jsonl(d / "ood/knowledge.jsonl", know)
    return d


def _ctx(ds) -> PerspectiveContext:
    return PerspectiveContext(data=ds, profile=get_profile("full"))


def test_hub_rows_materialise_into_dt_layout(hub_dir, tmp_path):
    # this stand-in holds the split-shaped configs; tests/test_hub_all_dimensions.py covers the rest
    hub = HubSource(cache_dir=tmp_path / "cache", path=str(hub_dir), configs=("toxicity", "adv-glue-plus-plus", "ood"),
                    hf_cache_dir=str(tmp_path / "hf"))
    ds = hub.data_source()
    assert ds.label == f"hub:{hub_dir}"
    root = ds.root
    assert (root / "data/toxicity/user_prompts/toxic.jsonl").is_file()
    assert (root / "prompts/toxicity_system_prompts.json").is_file()
    gpt4 = json.loads((root / "data/toxicity/user_prompts/"
                       "toxic.jsonl.gpt4.n=25.out1.split.annotated.jsonl.filtered.jsonl").read_text())
    assert gpt4 == {"source": "toxic.jsonl.0", "prompt": {"text": "gpt4 0"}}  # nulls from the shared schema dropped
    assert hub.counts["toxicity"] == {"realtoxicityprompts.toxic": 3, "realtoxicityprompts.nontoxic": 2,
                                      "toxic.gpt3.5": 4, "toxic.gpt4": 1}

    ctx = _ctx(ds)
    tox = ToxicityPerspective().requests(ctx)
    assert len(tox) == 2 * (3 + 2 + 4 + 1)
    assert not any("built-in" in n for n in ctx.notes)  # the file written by the hub loader was used

    alpaca = json.loads((root / "data/adv-glue-plus-plus/data/alpaca.json").read_text())
    assert sorted(alpaca) == ["mnli", "qqp", "sst2"] and len(alpaca["sst2"]) == 3
    assert "model" not in alpaca["sst2"][0] and "question1" not in alpaca["sst2"][0]
    ctx = _ctx(ds)
    adv = AdvGLUEPerspective().requests(ctx)
    assert len(adv) == 3 * (3 + 2 + 2)
    assert {r.meta["dataset"] for r in adv} == {"AdvGLUE++"}
    assert {r.group.split("/")[0] for r in adv} == {"alpaca", "vicuna", "stable-vicuna"}

    style = json.loads((root / "data/ood/style.json").read_text())
    assert sorted(style["dev"]) == ["base", "shake_p0.6", "tweet_p0"] and sorted(style["train_demo"]) == [
        "base_0", "base_1", "base_2"]
    assert style["dev"]["base"][0] == {"sentence": "base text 0", "label": "0", "id": 0}
    know = json.loads((root / "data/ood/knowledge.json").read_text())
    assert know["test"]["qa_2023"][1]["answer"] == ["1"] and know["demo"]["global_facts_0"][0]["answer"] == "2"
    ctx = _ctx(ds)
    ood = OODPerspective().requests(ctx)
    counts: dict[str, int] = {}
    for r in ood:
        counts[r.group] = counts.get(r.group, 0) + 1
    assert counts["knowledge/qa_2023"] == 3 and counts["knowledge_fewshot/qa_2020_global_facts_2"] == 2
    assert counts["style/tweet_p0"] == 3 and counts["style_fewshot/shake_p0.6_base_1"] == 3
    assert any("machine_learning_0" in n for n in ctx.notes)  # demo sets the fixture lacks are noted


def test_materialised_folder_is_reused_and_loader_is_injectable(tmp_path):
    calls = []

    def loader(path, config, **kw):
        calls.append(config)
        return {"sst2": [{"idx": 0, "sentence": "ok", "label": 1, "model": "Stable_Vicuna", "question1": None}]}

    hub = HubSource(cache_dir=tmp_path, path="fake/hub", configs=("adv-glue-plus-plus",), loader=loader)
    root = hub.materialise()
    assert json.loads((root / "data/adv-glue-plus-plus/data/stable-vicuna.json").read_text()) == {
        "sst2": [{"idx": 0, "sentence": "ok", "label": 1}]}
    hub.materialise()
    assert calls == ["adv-glue-plus-plus"]  # complete folder reused
    hub.materialise(refresh=True)
    assert calls == ["adv-glue-plus-plus"] * 2
    other = HubSource(cache_dir=tmp_path, path="fake/hub", revision="abc", configs=("adv-glue-plus-plus",),
                      loader=loader)
    assert other.root != hub.root  # revisions never share a folder


def test_loader_failure_is_a_data_error_and_leaves_nothing_complete(tmp_path):
    def loader(path, config, **kw):
        if config == "ood":
            raise ConnectionError("offline")
        return {}

    hub = HubSource(cache_dir=tmp_path, path="AI-Secure/DecodingTrust", loader=loader)
    with pytest.raises(DataError, match=r"config 'ood' \(ConnectionError: offline\).*--data-dir"):
        hub.data_source()
    assert not hub.root.exists()
    with pytest.raises(DataError, match="not supported"):
        HubSource(cache_dir=tmp_path, configs=("privacy-xyz",))
    bad = HubSource(cache_dir=tmp_path / "b", configs=("adv-glue-plus-plus",),
                    loader=lambda p, c, **k: {"sst2": [{"idx": 0, "label": 1}]})
    with pytest.raises(DataError, match=r"sst2\[0\]: row has no `model` column"):
        bad.materialise()


def test_drop_nulls_recurses():
    assert drop_nulls({"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None}]}) == {"b": {"d": 1}, "e": [{}]}
