"""Calibration sets: seeded, exact lengths, hashed; bundled text, local files, chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comptrust.compress.calibration import build_calibration, bundled_texts
from comptrust.errors import CompressionError, DataError
from comptrust.testing import make_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def test_bundled_windows_are_exact_seeded_and_hashed(tok):
    a = build_calibration("bundled", tok, n=16, seq_len=64, seed=0)
    b = build_calibration("bundled", tok, n=16, seq_len=64, seed=0)
    c = build_calibration("bundled", tok, n=16, seq_len=64, seed=1)
    assert a.n_samples == 16 and all(len(s) == 64 for s in a.samples)
    assert a.samples == b.samples and a.content_hash == b.content_hash
    assert a.samples != c.samples and a.content_hash != c.content_hash
    assert len({tuple(s) for s in a.samples}) == 16  # disjoint windows, no duplicates
    assert a.mode == "text" and not a.notes
    rec = a.record()
    assert rec["n_samples"] == 16 and rec["seq_len"] == 64 and rec["seed"] == 0 and rec["source"] == "bundled"


def test_bundled_corpus_is_our_varied_prose():
    texts = bundled_texts()
    assert len(texts) >= 4
    total = sum(len(t) for _, t in texts)
    assert 100_000 < total < 400_000
    assert all(len(t) > 5_000 for _, t in texts)


def test_bundled_is_enough_for_the_paper_setting_with_the_embedded_tokenizer():
    """128 x 512 disjoint windows with SmolLM2's tokenizer, when its checkpoint is cached."""
    import os

    root = Path(os.environ.get("COMPTRUST_CACHE") or Path.home() / ".cache" / "comptrust") / "models"
    cached = sorted(root.glob("smollm2-135m-instruct-*/tokenizer.json")) if root.is_dir() else []
    if not cached:
        pytest.skip("embedded model not cached (run `comptrust compress` once)")
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(cached[0].parent)
    cal = build_calibration("bundled", t, n=128, seq_len=512, seed=0)
    assert cal.n_samples == 128 and all(len(s) == 512 for s in cal.samples)
    assert not cal.notes  # disjoint windows: the prose holds at least 128 x 512 tokens


def test_too_little_text_draws_overlapping_windows_and_says_so(tok, tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("the quick brown fox jumps over the lazy dog " * 20)
    cal = build_calibration(str(p), tok, n=50, seq_len=32, seed=3)
    assert cal.n_samples == 50 and all(len(s) == 32 for s in cal.samples)
    assert cal.notes and "overlapping" in cal.notes[0]
    with pytest.raises(CompressionError, match="fewer than one --seq-len"):
        build_calibration(str(p), tok, n=2, seq_len=100_000, seed=0)


def test_jsonl_text_and_alpaca_records(tok, tmp_path):
    p = tmp_path / "a.jsonl"
    rows = [{"instruction": f"Name a color number {i}.", "input": "" if i % 2 else "Be brief.", "output": "blue"} for i in range(10)]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    plain = build_calibration(str(p), tok, n=4, seq_len=64, seed=0)
    assert plain.mode == "examples" and plain.n_samples == 4
    assert all(0 < len(s) <= 64 for s in plain.samples)
    assert plain.source_sha256 and plain.source == str(p.resolve())
    chat = build_calibration(str(p), tok, n=4, seq_len=64, seed=0, chat_template=True)
    text = tok.decode(chat.samples[0])
    assert "<|im_start|>user" in text and "<|im_start|>assistant" in text
    assert chat.content_hash != plain.content_hash
    with pytest.raises(CompressionError, match="fewer than --n-calib 11"):
        build_calibration(str(p), tok, n=11, seq_len=64, seed=0)

    q = tmp_path / "t.jsonl"
    q.write_text("\n".join(json.dumps({"text": "a river runs to the sea " * 10}) for _ in range(5)))
    cal = build_calibration(str(q), tok, n=3, seq_len=16, seed=0)
    assert cal.mode == "text" and all(len(s) == 16 for s in cal.samples)


def test_chat_template_wraps_text_windows(tok):
    cal = build_calibration("bundled", tok, n=2, seq_len=48, seed=0, chat_template=True)
    assert all(tok.decode(s).startswith("<|im_start|>user") for s in cal.samples)
    assert all(len(s) <= 48 for s in cal.samples)


def test_chat_template_needs_a_template(tmp_path):
    t = make_tokenizer(chat_template=None)
    with pytest.raises(CompressionError, match="has none; drop the flag"):
        build_calibration("bundled", t, n=2, seq_len=32, seed=0, chat_template=True)


def test_bad_files(tok, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_calibration(str(tmp_path / "missing.txt"), tok, n=1, seq_len=16, seed=0)
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="is empty"):
        build_calibration(str(tmp_path / "e.jsonl"), tok, n=1, seq_len=16, seed=0)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="use .txt"):
        build_calibration(str(tmp_path / "x.csv"), tok, n=1, seq_len=16, seed=0)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        build_calibration(str(tmp_path / "bad.jsonl"), tok, n=1, seq_len=16, seed=0)


def test_hub_sources_need_the_hub(tok, monkeypatch):
    from comptrust.compress import calibration

    monkeypatch.setattr(calibration, "hub_reachable", lambda *a, **k: False)
    for name in ("c4", "pile", "alpaca"):
        with pytest.raises(CompressionError, match=f"could not reach the HF hub for {name}; use --calib bundled or a local file"):
            build_calibration(name, tok, n=1, seq_len=16, seed=0)


def test_hub_sources_are_read_through_datasets(tok, monkeypatch):
    """With the hub reachable, records come from datasets.load_dataset (stubbed: no network in tests)."""
    import datasets

    from comptrust.compress import calibration

    calls = []

    def fake_load(path, **kw):
        calls.append(path)
        if path == "yahma/alpaca-cleaned":
            return [{"instruction": f"say {i}", "input": "", "output": str(i)} for i in range(8)]
        return [{"text": "words of a web page " * 30} for _ in range(8)]

    monkeypatch.setattr(calibration, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert build_calibration("c4", tok, n=4, seq_len=32, seed=0).mode == "text"
    assert build_calibration("alpaca", tok, n=4, seq_len=32, seed=0).mode == "examples"
    assert calls == ["allenai/c4", "yahma/alpaca-cleaned"]
