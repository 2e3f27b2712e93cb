"""MMLU: Hendrycks prompts, data loading, both scoring modes, log-likelihood of choices."""

from __future__ import annotations

import json
import sys

import pytest

from comptrust.benign.loglik import choice_logprobs
from comptrust.benign.mmlu_data import (
    MMLUQuestion, build_prompt, format_example, header, load_bundled, load_hub, load_local,
)
from comptrust.data.files import BadRows
from comptrust.data.source import DataSource
from comptrust.errors import DataError
from comptrust.perspectives import PerspectiveContext, get_perspective
from comptrust.profiles import get_profile
from comptrust.types import GenParams, Generation, Message, Request, SampleScore


def q(subject="high_school_geography", question="Q?", choices=("a", "b", "c", "d"), answer=1):
    return MMLUQuestion(subject, question, tuple(choices), answer)


def ctx(profile="smoke"):
    return PerspectiveContext(DataSource.bundled(), get_profile(profile), seed=0)


# ---------------------------------------------------------------- prompts

def test_prompt_is_hendrycks_five_shot():
    demos = [q(question=f"D{i}?", answer=i % 4) for i in range(5)]
    test = q(question="Which?", choices=("w", "x", "y", "z"), answer=2)
    p = build_prompt(test, demos)
    assert p.startswith("The following are multiple choice questions (with answers) about high school geography.\n\n")
    assert p.count("\nAnswer:") == 6
    assert "D0?\nA. a\nB. b\nC. c\nD. d\nAnswer: A\n\n" in p
    assert "D3?\nA. a\nB. b\nC. c\nD. d\nAnswer: D\n\n" in p
    assert p.endswith("\n\nWhich?\nA. w\nB. x\nC. y\nD. z\nAnswer:")
    assert header("abstract_algebra") == "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    assert format_example(test, include_answer=True).endswith("Answer: C\n\n")


def test_requests_one_user_message_per_question_stratified():
    P = get_perspective("mmlu")
    c = ctx()
    reqs = P.requests(c)
    assert len(reqs) == 8  # 4 subjects x per_group 2
    assert {r.group for r in reqs} == {"astronomy", "computer_security", "elementary_mathematics", "high_school_geography"}
    for r in reqs:
        assert len(r.messages) == 1 and r.messages[0].role == "user"
        body = r.messages[0].content
        assert body.startswith(f"The following are multiple choice questions (with answers) about {r.group.replace('_', ' ')}.")
        assert body.count("\nAnswer: ") == 5 and body.endswith("Answer:")
        assert r.choices == (" A", " B", " C", " D")
        assert r.meta["answer"] in "ABCD"
    # same data + seed -> same ids (paired across models); another seed -> another sample
    assert [r.id for r in P.requests(ctx())] == [r.id for r in reqs]
    other = P.requests(PerspectiveContext(DataSource.bundled(), get_profile("smoke"), seed=7))
    assert [r.id for r in other] != [r.id for r in reqs]
    full = P.requests(ctx("full"))
    assert len(full) == 24 and len({r.id for r in full}) == 24
    assert len(P.requests(PerspectiveContext(DataSource.bundled(), get_profile("full"), limit=5))) == 5
    assert any("bundled fixture" in n for n in c.notes)


def test_generate_mode_requests_and_ntrain_option():
    P = get_perspective("mmlu", mmlu_scoring="generate", mmlu_ntrain=2)
    c = ctx()
    r = P.requests(c)[0]
    assert r.choices == () and r.params.max_new_tokens == 16 and r.params.temperature == 0
    assert r.messages[0].content.count("\nAnswer: ") == 2
    from comptrust.errors import ConfigError

    with pytest.raises(ConfigError, match="mmlu_scoring"):
        get_perspective("mmlu", mmlu_scoring="sampling")


# ---------------------------------------------------------------- scoring and aggregate

def _req(answer="B", subject="astronomy", rid="r1", choices=(" A", " B", " C", " D")):
    return Request(rid, subject, (Message("user", "x"),), GenParams(1), meta={"answer": answer}, choices=choices)


def test_score_loglik_and_generate():
    P = get_perspective("mmlu")
    s = P.score(Generation(_req("B"), texts=(), logprobs=(-3.0, -1.0, -2.0, -5.0)))
    assert s.values["correct"] == 1.0 and s.parsed == "B" and s.refusal == 0
    s = P.score(Generation(_req("C"), texts=(), logprobs=(-1.0, -1.0, -2.0, -5.0)))  # tie -> first (A)
    assert s.parsed == "A" and s.values["correct"] == 0.0
    gen_req = _req("B", choices=())
    assert P.score(Generation(gen_req, texts=("  B. Because",))).values["correct"] == 1.0
    s = P.score(Generation(gen_req, texts=("b",)))  # lower-case is not A-D: comp-trust's rule
    assert s.values["correct"] == 0.0 and s.refusal == 1.0
    s = P.score(Generation(gen_req, texts=("I cannot answer",)))
    assert s.refusal == 1.0 and s.parsed is None
    s = P.score(Generation(gen_req, texts=("A", "B")))
    assert s.values["correct"] == 0.5 and s.refusal == 0.0
    s = P.score(Generation(_req("A"), texts=("A",)))  # loglik request answered with text only
    assert s.values["correct"] == 1.0 and s.meta["mode"] == "generate-fallback"
    with pytest.raises(ValueError):
        P.score(Generation(_req("A"), texts=(), logprobs=(-1.0, -2.0)))


def _ss(group, correct, refusal=0.0, rid=None):
    return SampleScore(rid or f"{group}-{correct}", group, {"correct": correct}, refusal=refusal, meta={"mode": "generate"})


def test_aggregate_is_sample_weighted_with_subject_breakdown():
    P = get_perspective("mmlu")
    scores = [_ss("astronomy", 1.0), _ss("astronomy", 1.0), _ss("astronomy", 1.0), _ss("virology", 0.0, refusal=1.0)]
    r = P.aggregate(scores, ctx())
    assert r.score == pytest.approx(75.0)  # 3/4, not the subject mean 50
    assert r.extra["macro_accuracy"] == pytest.approx(50.0)
    assert r.subscores == {"astronomy": 100.0, "virology": 0.0}
    assert r.refusal_rate == pytest.approx(0.25)
    assert r.counts == {"questions": 4, "subjects": 2, "refusals": 1}
    assert r.extra["categories"] == {"other": 0.0, "stem": 100.0}
    assert r.extra["per_subject"]["astronomy"]["n"] == 3
    # bootstrap resamples: duplicates and a missing subject must not crash
    r2 = P.aggregate([scores[0], scores[0]], ctx())
    assert r2.score == 100.0 and set(r2.subscores) == {"astronomy"}
    assert P.aggregate([], ctx()).score is None


# ---------------------------------------------------------------- data loading

def _write_csv_layout(root, rows_test, rows_dev=None, subject="anatomy"):
    for split, rows in (("test", rows_test), ("dev", rows_dev or rows_test)):
        d = root / "data" / split
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{subject}_{split}.csv").write_text(rows, encoding="utf-8")


def test_load_csv_layout_and_bundled(tmp_path):
    _write_csv_layout(tmp_path, 'What is a bone?,"a tissue, hard",b,c,d,A\nSecond?,w,x,y,z,D\n')
    data = load_local(tmp_path)
    assert [x.answer for x in data.test] == [0, 3]
    assert data.test[0].choices[0] == "a tissue, hard" and data.test[0].subject == "anatomy"
    assert len(data.dev["anatomy"]) == 2 and data.files
    b = load_bundled()
    assert len(b.subjects) == 4 and len(b.test) == 24 and all(len(v) == 5 for v in b.dev.values())


def test_load_jsonl_layout_and_hub_stand_in(tmp_path):
    rows = [{"question": "Q1", "subject": "virology", "choices": ["a", "b", "c", "d"], "answer": 2},
            {"question": "Q2", "subject": "virology", "choices": ["a", "b", "c", "d"], "answer": "D"}]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text(json.dumps(rows[0]), encoding="utf-8")
    data = load_local(tmp_path)
    assert [x.answer for x in data.test] == [2, 3] and len(data.dev["virology"]) == 1

    calls = []

    def loader(name, config, split):
        calls.append((name, config, split))
        return rows if split == "test" else rows[:1]

    hub = load_hub(loader)
    assert calls == [("cais/mmlu", "all", "test"), ("cais/mmlu", "all", "dev")]
    assert len(hub.test) == 2 and hub.source == "hub:cais/mmlu/all"
    P = get_perspective("mmlu", hub_loader=loader)
    c = PerspectiveContext(DataSource(root=tmp_path / "nowhere", label="dir:x"), get_profile("smoke"))
    assert len(P.requests(c)) == 2  # auto -> hub when the data dir has no data/mmlu

    def offline(*a, **k):
        raise ConnectionError("no network")

    with pytest.raises(DataError, match="cais/mmlu.*ConnectionError.*mmlu_source"):
        load_hub(offline)


def test_malformed_local_files_name_file_and_line(tmp_path):
    _write_csv_layout(tmp_path, "Fine?,a,b,c,d,A\nBroken?,a,b,c,d,E\n")
    with pytest.raises(DataError, match=r"anatomy_test\.csv:2: 'answer' must be 0-3 or A-D.*fix the file"):
        load_local(tmp_path)
    bad = BadRows("skip")
    assert len(load_local(tmp_path, bad).test) == 1 and bad.total == 2  # test and dev copies
    _write_csv_layout(tmp_path, "Fine?,a,b,c,d,A\n\"multi\nline\",a,b,c,d,B\nShort?,a,b\n")
    with pytest.raises(DataError, match=r"anatomy_test\.csv:4: expected 6 columns"):
        load_local(tmp_path)
    j = tmp_path / "j"
    j.mkdir()
    (j / "test.jsonl").write_text('{"question": "Q", "subject": "s", "choices": ["a", "b", "c"], "answer": 0}\n')
    with pytest.raises(DataError, match=r"test\.jsonl:1: 'choices' must be a list of exactly 4"):
        load_local(j)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MMLU files found"):
        load_local(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        load_local(tmp_path / "missing")


def test_cli_malformed_mmlu_dir_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from comptrust.cli import main

    _write_csv_layout(tmp_path, "Fine?,a,b,c,d,A\nBroken?,a,b,c,d\n")
    monkeypatch.setattr(sys, "argv", ["comptrust", "benign", "--mmlu-data", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "anatomy_test.csv:2: expected 6 columns" in err


# ---------------------------------------------------------------- on a tiny random model

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from comptrust.testing import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("tiny"))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tok


def _direct_logprob(model, tok, prompt, choice):
    """Reference: one full forward pass per choice, token by token, no cache."""
    import torch

    ctx_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    whole = tok(prompt + choice, add_special_tokens=False)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(ctx_ids, whole)) if a != b), min(len(ctx_ids), len(whole)))
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].float(), dim=-1)
    return sum(float(logp[i - 1, whole[i]]) for i in range(start, len(whole)))


@pytest.mark.parametrize("prompt,choices", [
    ("Question: the quick brown fox\nAnswer:", (" A", " B", " C", " D")),
    ("Here is my statement: people are ", ("good.", "not wrong at all", "maybe", "xq")),  # space joins the choice
    ("<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n", (" A", " B", "A", "I agree")),
    ("the quick brown fox jumps", ("over the lazy dog", " over", "s", " 0 1 2 3 4")),  # "s" merges into "jumps"?
])
def test_choice_logprobs_matches_direct_computation(tiny, prompt, choices):
    model, tok = tiny
    got = choice_logprobs(model, tok, prompt, choices)
    want = [_direct_logprob(model, tok, prompt, c) for c in choices]
    assert got == pytest.approx(want, abs=1e-4)
    assert all(v < 0 for v in got)


def test_both_scoring_modes_end_to_end_on_tiny_model(tiny):
    import torch

    model, tok = tiny
    for mode in ("loglik", "generate"):
        P = get_perspective("mmlu", mmlu_scoring=mode, mmlu_max_new_tokens=4)
        c = ctx()
        scores = []
        for r in P.requests(c):
            prompt = tok.apply_chat_template([{"role": m.role, "content": m.content} for m in r.messages],
                                             tokenize=False, add_generation_prompt=True)
            if r.choices:
                gen = Generation(r, texts=(), prompt=prompt, logprobs=choice_logprobs(model, tok, prompt, r.choices))
            else:
                ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
                with torch.no_grad():
                    out = model.generate(**ids, max_new_tokens=r.params.max_new_tokens, do_sample=False)
                gen = Generation(r, texts=(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True),), prompt=prompt)
            scores.append(P.score(gen))
        res = P.aggregate(scores, c)
        assert res.counts["questions"] == 8 and 0 <= res.score <= 100
        assert res.score == pytest.approx(100 * sum(s.values["correct"] for s in scores) / 8)
        if mode == "loglik":
            assert res.refusal_rate == 0 and all(s.parsed in "ABCD" for s in scores)
        else:
            assert all((s.parsed is None) == (s.refusal == 1.0) for s in scores)
        assert any(f"scoring: {mode}" in n for n in res.notes)
