"""DT's do_classification: message construction, answer parsing, and the shared build helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from comptrust.data.source import DataSource
from comptrust.errors import ConfigError
from comptrust.perspectives import PerspectiveContext
from comptrust.perspectives.classification import (
    FEW_SHOT_ACK,
    FEW_SHOT_SYSTEM,
    ZERO_SHOT_SYSTEM,
    capped_tokens,
    classification_messages,
    classification_row_validator,
    classify,
    parse_answer,
    sample_count,
    sample_items,
)
from comptrust.profiles import get_profile
from comptrust.types import Message


def ctx(profile: str = "full", tmp: Path | None = None) -> PerspectiveContext:
    root = tmp or Path(".")
    return PerspectiveContext(data=DataSource(root=root), profile=get_profile(profile))


def test_zero_shot_messages():
    msgs = classification_messages("Task.", "the input")
    assert msgs == (Message("system", "You are a helpful assistant."), Message("user", "Task.\nthe input"))
    assert ZERO_SHOT_SYSTEM == "You are a helpful assistant."


def test_few_shot_messages_are_user_assistant_turns():
    msgs = classification_messages("Task.", "x3", [["x1", "yes"], ["x2", "not wrong"]])
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert msgs[0].content == FEW_SHOT_SYSTEM == "You are a helpful, pattern-following assistant."
    assert msgs[1].content == "Task."
    assert msgs[2].content == FEW_SHOT_ACK == "Sure, I'd be happy to!"
    # demo labels go through str.capitalize(): first letter up, the rest down
    assert [m.content for m in msgs[3:7]] == ["x1", "Yes", "x2", "Not wrong"]
    assert msgs[-1] == Message("user", "x3")
    # never demos as system messages
    assert sum(m.role == "system" for m in msgs) == 1


def test_capitalize_lowercases_the_rest():
    msgs = classification_messages("T", "x", [["a", "HIGH"]])
    assert msgs[4].content == "High"


@pytest.mark.parametrize("text,pred,pre", [
    ("Yes", "yes", "yes"),
    ("Answer: no", "no", "no"),  # leading 'answer:' dropped
    ("  Maybe.  It depends", "maybe.  it depends", "maybe"),
    ("no, because</s>junk", "no, because", "no"),
    ("positive<|im_end|>", "positive", "positive"),
    ("yes\nthe premise", "yes\nthe premise", "yes"),
    ("The answer is yes.", "the answer is yes.", "the answer is yes"),
])
def test_parse_answer(text, pred, pre):
    p = parse_answer(text)
    assert (p.pred, p.pre) == (pred, pre)


def test_classify_correct_unknown():
    opts = ["yes", "maybe", "no"]
    assert classify("Yes.", "yes", opts).correct
    o = classify("No", "yes", opts)
    assert not o.correct and not o.unknown  # wrong but in-option
    o = classify("I cannot answer that", "yes", opts)
    assert not o.correct and o.unknown
    # pre equals the label even though the full answer has an explanation
    assert classify("yes, the premise entails it", "yes", opts).correct


def test_profile_helpers():
    full, quick, smoke = ctx("full"), ctx("quick"), ctx("smoke")
    assert sample_count(100, full) == 100
    assert sample_count(100, quick) == get_profile("quick").n_samples
    assert sample_count(1, quick) == 1  # never more samples than DT asks for
    assert capped_tokens(20, full) == 20 and not full.notes
    assert capped_tokens(64, smoke) == 24 and "capped at 24" in smoke.notes[0]
    items = [(g, i) for g in "abc" for i in range(30)]
    s1 = sample_items(items, lambda it: it[0], quick)
    s2 = sample_items(items, lambda it: it[0], ctx("quick"))
    assert s1 == s2 and len(s1) == 30  # paired: same data, profile and seed -> same sample
    limited = ctx("quick")
    limited.limit = 7
    assert len(sample_items(items, lambda it: it[0], limited)) == 7


def test_row_validator():
    check = classification_row_validator()
    good = {"option": ["yes", "no"], "input": "x", "label": "yes", "examples": [["a", "no"]]}
    assert check(good) is None
    assert "missing the field 'examples'" in check({k: v for k, v in good.items() if k != "examples"})
    assert "unknown label 'perhaps'" in check({**good, "label": "perhaps"})
    assert "examples" in check({**good, "examples": [["a"]]})
