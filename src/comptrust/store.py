"""The run store: one SQLite database per run directory (WAL mode).

responses: one row per (model fingerprint, backend, formatted prompt, generation parameters,
           sample index) -> generated text. The key is a hash of all of those, so two models or
           two variants never share answers, and a re-run only generates what is missing.
scores:    a cache of scorer outputs per text (e.g. toxicity), keyed by scorer name@version and
           the text's hash, so switching scorers re-scores stored generations without
           regenerating, and re-running a scorer costs nothing.
Answers are committed a batch at a time in one transaction: a kill loses at most the batch in
flight, never half a batch, and never duplicates (primary keys + INSERT OR IGNORE).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from .faults import checkpoint
from .types import GenParams, stable_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model_fp TEXT NOT NULL,
    backend TEXT NOT NULL,
    perspective TEXT NOT NULL,
    request_id TEXT NOT NULL,
    sample_idx INTEGER NOT NULL,
    params TEXT NOT NULL,
    prompt TEXT NOT NULL,
    text TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    scorer TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scorer, text_hash)
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


def request_key(model_fp: str, backend: str, prompt: str, params: GenParams, sample_idx: int,
                choices: tuple[str, ...] = (), sample_seed: int | None = None) -> str:
    """sample_seed: the seed sample `sample_idx` is generated with (t > 0 only; see seeds.py), so
    an answer drawn with another seed, or (HF backend) by another version of our sampler
    (backends.sampling.SAMPLER), is never reused. Greedy keys have neither."""
    rec: dict[str, Any] = {"m": model_fp, "b": backend, "p": prompt, "g": params.key_dict(), "i": sample_idx}
    if choices:
        rec["c"] = list(choices)
    if sample_seed is not None:
        rec["s"] = sample_seed
        if backend == "hf":  # vLLM and endpoints sample with their own code
            from .backends.sampling import SAMPLER

            rec["d"] = SAMPLER
    return stable_hash(rec, 40)


def text_hash(text: str) -> str:
    return stable_hash(text, 32)


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A generous busy timeout: two processes writing one run dir wait for each other instead
        # of surfacing "database is locked".
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=60000")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- responses -------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[str, int]]:
        keys = list(keys)
        out: dict[str, tuple[str, int]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, text, n_tokens FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
            for k, text, n in self.conn.execute(q, chunk):
                out[k] = (text, n)
        return out

    def put_many(self, rows: list[dict[str, Any]]) -> int:
        """Insert a batch atomically. Returns how many rows were new."""
        if not rows:
            return 0
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO responses (key, model_fp, backend, perspective, request_id, sample_idx, "
                "params, prompt, text, n_tokens, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(r["key"], r["model_fp"], r["backend"], r["perspective"], r["request_id"], r["sample_idx"],
                  json.dumps(r["params"], sort_keys=True), r["prompt"], r["text"], r["n_tokens"], now) for r in rows],
            )
            added = self.conn.total_changes - before
            checkpoint("store.commit")  # rows inserted, transaction not committed yet
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return added

    def count(self, model_fp: str | None = None) -> int:
        if model_fp is None:
            return self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM responses WHERE model_fp=?", (model_fp,)).fetchone()[0]

    # -- score cache (the toxicity scorers' ScoreCache protocol) -----------------------------
    def get_scores(self, scorer_id: str, text_hashes: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(0, len(text_hashes), 500):
            chunk = text_hashes[i:i + 500]
            q = f"SELECT text_hash, value FROM scores WHERE scorer=? AND text_hash IN ({','.join('?' * len(chunk))})"
            for h, v in self.conn.execute(q, [scorer_id, *chunk]):
                out[h] = json.loads(v)
        return out

    def put_scores(self, scorer_id: str, items: dict[str, Any]) -> None:
        if not items:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                "INSERT OR REPLACE INTO scores (scorer, text_hash, value) VALUES (?,?,?)",
                [(scorer_id, h, json.dumps(v)) for h, v in items.items()],
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def score_cache(self) -> "StoreScoreCache":
        return StoreScoreCache(self)


class StoreScoreCache:
    """Adapter giving scorers `get_many(scorer_id, hashes)` / `put_many(scorer_id, items)`."""

    def __init__(self, store: Store):
        self.store = store

    def get_many(self, scorer_id: str, text_hashes: list[str]) -> dict[str, Any]:
        return self.store.get_scores(scorer_id, text_hashes)

    def put_many(self, scorer_id: str, items: dict[str, Any]) -> None:
        self.store.put_scores(scorer_id, items)
