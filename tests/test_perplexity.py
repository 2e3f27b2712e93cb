"""Sliding-window perplexity (HF docs method), text sources, and the `benign --perplexity` CLI."""

from __future__ import annotations

import json
import math
import sys

import pytest

from comptrust.benign.perplexity import BUNDLED_HELDOUT, load_text, perplexity
from comptrust.errors import DataError

TEXT = ("the quick brown fox jumps over the lazy dog. I agree. I disagree. "
        "You are a helpful assistant. Please answer the following question with a short answer. ") * 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from comptrust.testing import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("tiny"))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tok, path


def _chunked_reference(model, tok, text, size):
    """Disjoint chunks, each scored by the model's own loss (labels = inputs)."""
    import torch

    ids = tok(text, return_tensors="pt")["input_ids"][0]
    nll, n = 0.0, 0
    for i in range(0, len(ids), size):
        chunk = ids[i:i + size]
        if len(chunk) < 2:
            continue
        with torch.no_grad():
            loss = model(input_ids=chunk[None], labels=chunk[None]).loss
        nll += float(loss) * (len(chunk) - 1)
        n += len(chunk) - 1
    return math.exp(nll / n), n


def test_stride_equal_max_length_is_disjoint_windows(tiny):
    model, tok, _ = tiny
    n_ids = len(tok(TEXT)["input_ids"])
    assert n_ids > 100
    res = perplexity(model, tok, TEXT, max_length=32, stride=32)
    want, n = _chunked_reference(model, tok, TEXT, 32)
    assert res.ppl == pytest.approx(want, rel=1e-4)
    assert res.n_tokens == n and res.text_tokens == n_ids
    assert res.n_windows == math.ceil(n_ids / 32)


def test_overlapping_windows_score_every_token_once(tiny):
    model, tok, _ = tiny
    n_ids = len(tok(TEXT)["input_ids"])
    res = perplexity(model, tok, TEXT, max_length=32, stride=12)
    assert res.n_tokens == n_ids - 1  # every token but the first, exactly once
    whole = perplexity(model, tok, TEXT, max_length=512, stride=512)  # one window = one full pass
    assert whole.n_windows == 1 and whole.n_tokens == n_ids - 1
    want, _ = _chunked_reference(model, tok, TEXT, n_ids)
    assert whole.ppl == pytest.approx(want, rel=1e-4)
    assert res.ppl != pytest.approx(whole.ppl, rel=1e-6)  # less context -> a different number
    capped = perplexity(model, tok, TEXT, max_length=10_000, stride=10_000)
    assert capped.max_length == 512  # the model's context size


def test_uniform_model_has_perplexity_equal_to_vocab_size(tiny):
    """A known tiny case: a zero output layer makes every next-token distribution uniform."""
    import copy

    import torch

    model, tok, _ = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    res = perplexity(model, tok, TEXT[:300], max_length=16, stride=5)
    assert res.ppl == pytest.approx(model.config.vocab_size, rel=1e-5)


def test_bad_arguments_and_short_text(tiny):
    model, tok, _ = tiny
    with pytest.raises(ValueError):
        perplexity(model, tok, TEXT, max_length=8, stride=9)
    with pytest.raises(DataError, match="fewer than 2 tokens"):
        perplexity(model, tok, "", max_length=8, stride=4)


def test_text_sources(tmp_path):
    text, label = load_text("bundled")
    assert label == "bundled:heldout.txt" and 30_000 <= len(text.encode()) <= 60_000
    assert BUNDLED_HELDOUT.is_file()
    f = tmp_path / "t.txt"
    f.write_text("hello world", encoding="utf-8")
    assert load_text(str(f)) == ("hello world", f"file:{f}")
    with pytest.raises(DataError, match="no such text file"):
        load_text(str(tmp_path / "missing.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DataError, match="not UTF-8"):
        load_text(str(tmp_path / "bin.txt"))

    def fake(name, config, split):
        assert (name, config, split) == ("Salesforce/wikitext", "wikitext-2-raw-v1", "test")
        return {"text": [" = Title = ", "", " body "]}

    assert load_text("wikitext2", loader=fake) == (" = Title = \n\n\n\n body ", "hub:Salesforce/wikitext/wikitext-2-raw-v1/test")

    def offline(*a, **k):
        raise ConnectionError("offline")

    with pytest.raises(DataError, match="WikiText-2.*ConnectionError.*--perplexity bundled"):
        load_text("wikitext2", loader=offline)


def _cli(monkeypatch, capsys, *args):
    from comptrust.cli import main

    monkeypatch.setattr(sys, "argv", ["comptrust", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def test_cli_perplexity_prints_and_stores(tiny, tmp_path, monkeypatch, capsys):
    model, tok, path = tiny
    txt = tmp_path / "t.txt"
    txt.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    code, io = _cli(monkeypatch, capsys, "benign", "--model", str(path), "--perplexity", str(txt),
                    "--max-length", "32", "--stride", "32", "--out", str(out))
    assert code == 0, io.err
    want = perplexity(model, tok, TEXT, max_length=32, stride=32)
    assert f"perplexity {want.ppl:.3f}" in io.out
    stored = json.loads((out / "perplexity.json").read_text())
    (entry,) = stored["results"].values()
    assert entry["ppl"] == pytest.approx(want.ppl, rel=1e-6) and stored["model"]["path"] == str(path)

    code, io = _cli(monkeypatch, capsys, "benign", "--model", str(path), "--perplexity", str(tmp_path / "nope.txt"))
    assert code == 2 and len(io.err.strip().splitlines()) == 1 and "no such text file" in io.err
    code, io = _cli(monkeypatch, capsys, "benign", "--model", str(path))
    assert code == 2 and "nothing to do" in io.err
