"""Every answer parser and scorer under arbitrary model output (unicode, control characters,
huge strings): it never raises and always returns a valid label or an explicit unknown."""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comptrust.perspectives import (adv_demonstration, advglue, classification, fairness, machine_ethics, mmlu, ood,
                                    privacy, stereotype, toxicity)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Arbitrary text plus the words the parsers look for, so the branches past the first check run.
WORDS = ["yes", "no", "Yes", "No", "high", "low", "High", "Low", "positive", "negative", "agree", "disagree",
         "I agree.", "I disagree.", "I am sorry", "As an AI", "not wrong", "wrong", "2023", "answer:", "</s>",
         "<|im_end|>", "'", '"', ".", ",", "\n", "\r", "\x00", "\u202e", "@", "a@b.co", "user:", "assistant:",
         "[bold red]", "A", "B", "0", "1", "3", "4", "\ud7ff", "🙂", "\t"]
TEXT = st.one_of(
    st.text(),
    st.lists(st.sampled_from(WORDS) | st.text(max_size=5), max_size=30).map("".join),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=50),
)
HUGE = ("I agree. yes no high low positive \x00 " * 40_000)  # ~1.4 MB: one answer gone wild



@FUZZ
@given(TEXT)
def test_stereotype_classifiers(text):
    for parser in stereotype.PARSERS:
        assert stereotype.classify(text, parser, statement="Women are bad at math.") in (
            stereotype.AGREE, stereotype.DISAGREE, stereotype.NO_RESPONSE)


@FUZZ
@given(TEXT, st.sampled_from(sorted(advglue.ANSWER_MAPPING)), st.booleans())
def test_advglue_parse(text, task, fixed):
    assert advglue.parse_prediction(text, task, fixed) in {-1, *advglue.ANSWER_MAPPING[task].values()}


@FUZZ
@given(TEXT, st.sampled_from(["0", "1", "2", "3"]))
def test_ood_judges(text, label):
    correct, abstained, digit = ood.judge_knowledge(text, label, ["Paris", "Rome", "Oslo", "Bern"])
    assert isinstance(correct, bool) and isinstance(abstained, bool) and digit in (None, "0", "1", "2", "3")
    correct, refused = ood.judge_style(text, "positive")
    assert isinstance(correct, bool) and isinstance(refused, bool)


@FUZZ
@given(TEXT)
def test_classification_parse(text):
    out = classification.classify(text, "yes", ["yes", "no"])
    assert isinstance(out.correct, bool) and isinstance(out.unknown, bool)
    assert not (out.correct and out.unknown)
    assert isinstance(out.parsed.pred, str) and isinstance(out.parsed.pre, str)


@FUZZ
@given(TEXT, st.booleans())
def test_ethics_parse(text, attack):
    assert isinstance(machine_ethics.parse_ethics(text, attack), str)


@FUZZ
@given(TEXT, st.sampled_from(["adult", "crime"]))
def test_fairness_parse(text, dataset):
    assert fairness.parse_fairness(text, dataset) in (0, 1, "both", None)


def _rates(d: dict[str, float]) -> None:
    assert d and all(isinstance(v, float) and v in (0.0, 1.0) for v in d.values())


@FUZZ
@given(TEXT)
def test_privacy_scorers(text):
    _rates(privacy.enron_sample(text, "jane.doe@enron.com"))
    _rates(privacy.pii_sample(text, "123-45-6789"))
    _rates(privacy.understanding_sample(text))


@FUZZ
@given(TEXT)
def test_mmlu_letter(text):
    assert mmlu.parse_letter(text) in (None, "A", "B", "C", "D")


@FUZZ
@given(TEXT)
def test_refusal_detectors(text):
    assert isinstance(toxicity.is_refusal(text), bool)
    assert isinstance(toxicity.strip_output(text), str)
    assert isinstance(adv_demonstration.is_refusal(text), bool)


@pytest.fixture(scope="module")
def default_scorer():
    from comptrust.scoring.toxicity_scorers import make_scorer

    return make_scorer("default")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(TEXT, min_size=1, max_size=8))
def test_default_toxicity_scorer(default_scorer, texts):
    out = default_scorer.score(texts)
    assert len(out) == len(texts)
    assert all(isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in out)


def test_huge_output_everywhere(default_scorer):
    for parser in stereotype.PARSERS:
        assert stereotype.classify(HUGE, parser) in (stereotype.AGREE, stereotype.DISAGREE, stereotype.NO_RESPONSE)
    assert advglue.parse_prediction(HUGE, "sst2") in (-1, 0, 1)
    assert fairness.parse_fairness(HUGE, "adult") in (0, 1, "both", None)
    assert isinstance(machine_ethics.parse_ethics(HUGE, False), str)
    assert classification.classify(HUGE, "yes", ["yes", "no"]).correct in (True, False)
    ood.judge_knowledge(HUGE, "1", ["a", "b", "c", "d"])
    _rates(privacy.enron_sample(HUGE, "a@b.co"))
    assert mmlu.parse_letter(HUGE) in (None, "A", "B", "C", "D")
    assert isinstance(toxicity.is_refusal(HUGE), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (overflow) on the user's terminal
        (v,) = default_scorer.score([HUGE])
    assert 0.0 <= v <= 1.0
