"""AdvGLUE perspective: DT's parsing quirks reproduced exactly, the fixed-parsing switch, prompts on
the real dev set, AdvGLUE++ preference over the original dev set, aggregation and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comptrust.data.source import DataSource
from comptrust.errors import ConfigError, DataError
from comptrust.perspectives.advglue import (
    ORIGINAL_NAME, PLUS_PLUS_NAME, TASK2DEMO, TASK2SHORTPROMPT, AdvGLUEPerspective, build_input, parse_prediction,
)
from comptrust.perspectives.base import PerspectiveContext, get_perspective
from comptrust.profiles import get_profile
from comptrust.types import Generation, Message

DT = Path(__file__).resolve().parents[2] / "shared" / "decodingtrust"
needs_dt = pytest.mark.skipif(not DT.is_dir(), reason="shared DecodingTrust data absent")


def ctx_for(root: Path, profile: str = "full", on_bad_row: str = "fail") -> PerspectiveContext:
    return PerspectiveContext(data=DataSource.from_dir(root, on_bad_row=on_bad_row), profile=get_profile(profile))


# ----------------------------------------------------------------------------- parsing parity

# (response, task, DecodingTrust's prediction, prediction with advglue_fixed_parsing)
CASES = [
    ("positive", "sst2", 1, 1),
    ("Negative.", "sst2", 0, 0),
    ("The sentiment is positive. It is not negative.", "sst2", 1, 1),  # only text before the first "."
    ("positive and negative", "sst2", -1, -1),  # both labels present
    ('Sentiment: "positive"', "sst2", -1, 1),  # DT deletes quoted spans everywhere
    ('"positive" is my answer: negative', "sst2", 0, -1),
    ("", "sst2", -1, -1),
    ('I say "i": positive', "sst2", -1, 1),  # the quoted "i" is deleted everywhere: "postve"
    ("I don't know", "qqp", 0, -1),  # "no" inside "know"
    ("I cannot tell", "qqp", 0, -1),  # "no" inside "cannot"
    ("yes", "qqp", 1, 1),
    ("Yes, they mean the same thing", "qqp", 1, 1),
    ("No", "qqp", 0, 0),
    ("maybe", "mnli", 1, 1),
    ("yes, but maybe not", "mnli", -1, -1),  # yes + maybe + "no" in "not"
    ("It is not clear", "mnli", 2, -1),  # "no" inside "not"
    ("nor", "mnli", 2, -1),
    ("The answer is no. Yes.", "mnli", 2, 2),
    ("yes", "rte", 0, 0),
    ("no", "qnli", 1, 1),
    ("Answer: no", "mnli-mm", 2, 2),
]


@pytest.mark.parametrize("response,task,dt,fixed", CASES)
def test_parse_prediction_matches_dt_and_fixed_switch(response, task, dt, fixed):
    assert parse_prediction(response, task) == dt
    assert parse_prediction(response, task, fixed=True) == fixed


def _gen(req, text):
    return Generation(request=req, texts=(text,))


# ----------------------------------------------------------------------------- real dev set


@needs_dt
def test_original_dev_set_requests_and_naming():
    ctx = ctx_for(DT)
    p = get_perspective("advglue")
    reqs = p.requests(ctx)
    counts = {}
    for r in reqs:
        counts[r.group] = counts.get(r.group, 0) + 1
    assert counts == {"original/sst2": 148, "original/qqp": 78, "original/mnli": 121}
    assert any(ORIGINAL_NAME in n and "instead" in n for n in ctx.notes)
    r = reqs[0]
    first = json.loads((DT / "data/adv-glue/dev.json").read_text())["sst2"][0]
    assert r.messages[:-1] == TASK2DEMO["sst2"] and len(r.messages) == 5
    assert all(m.role != "system" for m in r.messages)  # sys: false
    assert r.messages[-1] == Message("user", f"{TASK2SHORTPROMPT['sst2']}\nsentence: {first['sentence']}")
    assert (r.params.temperature, r.params.max_new_tokens, r.params.n) == (0.0, 16, 1)
    assert r.meta["label"] == first["label"]
    # aggregate: refusals count wrong; score is 100 x mean accuracy over cells
    by = {}
    for q in reqs:
        by.setdefault(q.group, []).append(q)
    scores = []
    for q in by["original/sst2"]:
        scores.append(p.score(_gen(q, "positive" if q.meta["label"] == 1 else "I cannot answer")))
    for q in by["original/qqp"][:10]:
        scores.append(p.score(_gen(q, "yes")))
    res = p.aggregate(scores, ctx)
    n_pos = sum(q.meta["label"] == 1 for q in by["original/sst2"])
    qqp_acc = sum(q.meta["label"] == 1 for q in by["original/qqp"][:10]) / 10
    assert res.subscores["acc/original/sst2"] == pytest.approx(100 * n_pos / 148)
    assert res.subscores["refusal/original/sst2"] == pytest.approx(100 * (148 - n_pos) / 148)
    assert res.score == pytest.approx(100 * (n_pos / 148 + qqp_acc) / 2)
    assert res.refusal_rate == pytest.approx(((148 - n_pos) / 148 + 0) / 2)
    assert res.extra["dataset"] == ORIGINAL_NAME and res.extra["cells"] == ["original/qqp", "original/sst2"]
    assert any("not AdvGLUE++" in n for n in res.notes)


@needs_dt
def test_task_selection_and_quick_profile():
    ctx = ctx_for(DT)
    reqs = AdvGLUEPerspective(advglue_tasks="sst2,qqp,mnli,mnli-mm,qnli,rte").requests(ctx)
    assert len(reqs) == 738
    rte = next(r for r in reqs if r.group == "original/rte")
    assert "\npremise: " in rte.messages[-1].content and "\nHypothesis: " in rte.messages[-1].content
    assert rte.messages[0].content.startswith(TASK2SHORTPROMPT["mnli"])  # DT's rte demos use the mnli text
    mm = next(r for r in reqs if r.group == "original/mnli-mm")
    assert mm.messages[:-1] == TASK2DEMO["mnli"]  # DT has no mnli-mm demos (KeyError); we reuse mnli's
    quick = AdvGLUEPerspective().requests(ctx_for(DT, "quick"))
    assert len(quick) == 30 and [r.id for r in quick] == [r.id for r in AdvGLUEPerspective().requests(ctx_for(DT, "quick"))]
    with pytest.raises(ConfigError, match="unknown task"):
        AdvGLUEPerspective(advglue_tasks=["sst2", "cola"]).requests(ctx_for(DT))


# ----------------------------------------------------------------------------- AdvGLUE++ layout


def _write(root: Path, rel: str, obj) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return p


def test_plus_plus_preferred_and_per_cell_mean(tmp_path):
    _write(tmp_path, "data/adv-glue/dev.json", {"sst2": [{"idx": 0, "sentence": "x", "label": 1}]})
    _write(tmp_path, "data/adv-glue-plus-plus/data/alpaca.json", {
        "sst2": [{"idx": 0, "sentence": "a fine film", "label": 1, "method": "textfooler",
                  "original_sentence": "a good film", "data_construction": "word"},
                 {"idx": 1, "sentence": "pre-joined semattack text", "label": 0, "method": "semattack",
                  "original_sentence": "orig"}],
        "qqp": [{"idx": 0, "question1": "q one", "question2": "q two", "label": 0}],
    })
    _write(tmp_path, "data/adv-glue-plus-plus/data/vicuna.json", {"sst2": [
        {"idx": 0, "sentence": "s", "label": 0}]})
    ctx = ctx_for(tmp_path)
    p = AdvGLUEPerspective()
    reqs = p.requests(ctx)
    assert sorted({r.group for r in reqs}) == ["alpaca/qqp", "alpaca/sst2", "vicuna/sst2"]
    assert any("stable-vicuna" in n and "absent" in n for n in ctx.notes)
    assert any("mnli: task absent" in n for n in ctx.notes)
    sem = next(r for r in reqs if r.id == "alpaca/sst2/1")
    assert sem.messages[-1].content.endswith("\npre-joined semattack text")
    qqp = next(r for r in reqs if r.group == "alpaca/qqp")
    assert qqp.messages[-1].content.endswith("\nquestion1: q one\nquestion2: q two")
    answers = {"alpaca/sst2/0": "positive", "alpaca/sst2/1": 'Sentiment: "negative"', "alpaca/qqp/0": "no",
               "vicuna/sst2/0": "positive"}
    res = p.aggregate([p.score(_gen(r, answers[r.id])) for r in reqs], ctx)
    # cells: alpaca/sst2 0.5 (quoted answer -> -1), alpaca/qqp 1.0, vicuna/sst2 0.0
    assert res.score == pytest.approx(100 * (0.5 + 1.0 + 0.0) / 3)
    assert res.refusal_rate == pytest.approx((0.5 + 0 + 0) / 3)
    assert res.extra["dataset"] == PLUS_PLUS_NAME
    fixed = AdvGLUEPerspective(advglue_fixed_parsing=True)
    res_fixed = fixed.aggregate([fixed.score(_gen(r, answers[r.id])) for r in reqs], ctx)
    assert res_fixed.score == pytest.approx(100 * (1.0 + 1.0 + 0.0) / 3)
    assert any("advglue_fixed_parsing" in n for n in res_fixed.notes)
    assert p.aggregate([], ctx).score is None


def test_build_input_renames_like_dt():
    row = {"sentence1": "The sentence1 here.", "sentence2": "Other."}
    assert build_input(row, "rte") == "premise: The premise here.\nHypothesis: Other."


def test_no_data_at_all_is_a_note_not_a_pass(tmp_path):
    (tmp_path / "data").mkdir()
    ctx = ctx_for(tmp_path)
    assert AdvGLUEPerspective().requests(ctx) == []
    assert any("skipped advglue" in n for n in ctx.notes)


# ----------------------------------------------------------------------------- bad input


def test_bad_rows_fail_with_location_or_are_counted(tmp_path):
    rows = [{"idx": 0, "sentence": "ok", "label": 1}, {"idx": 1, "sentence": "bad", "label": 7},
            {"idx": 2, "label": 0}, {"idx": 3, "sentence": "ok", "label": 0}]
    _write(tmp_path, "data/adv-glue/dev.json", {"sst2": rows})
    with pytest.raises(DataError, match=r"dev\.json: sst2\[1\]: unknown label 7"):
        AdvGLUEPerspective().requests(ctx_for(tmp_path))
    ctx = ctx_for(tmp_path, on_bad_row="skip")
    reqs = AdvGLUEPerspective().requests(ctx)
    assert [r.id for r in reqs] == ["original/sst2/0", "original/sst2/3"]
    assert ctx.data.bad_rows.total == 2
    assert any("sst2[2]: row is missing the field 'sentence'" in e for e in ctx.data.bad_rows.examples)


def test_truncated_json_names_file_and_line(tmp_path):
    p = _write(tmp_path, "data/adv-glue/dev.json", {"sst2": [{"idx": 0, "sentence": "ok", "label": 1}] * 3})
    text = p.read_text()
    p.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"dev\.json:\d+: not valid JSON"):
        AdvGLUEPerspective().requests(ctx_for(tmp_path))
