"""Perplexity with the sliding-window method of the Hugging Face docs ("Perplexity of
fixed-length models").

The text is tokenized once. Windows of `max_length` tokens start every `stride` tokens; in each
window only the tokens not scored by an earlier window are scored, each conditioned on up to
max_length - 1 tokens before it. stride == max_length gives disjoint windows (the first token of
each window then has no context and is not scored, as in the docs' corrected loop); a smaller
stride gives every scored token more context and a lower, slower perplexity.

Text sources: "bundled" (held-out prose written for this project, offline), "wikitext2"
(WikiText-2 raw test split from the HF hub, joined with "\n\n" as in the docs) or a path.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError

BUNDLED_HELDOUT = Path(str(resources.files("comptrust") / "bundled" / "heldout" / "heldout.txt"))
WIKITEXT2 = ("Salesforce/wikitext", "wikitext-2-raw-v1", "test")


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    n_tokens: int  # tokens scored
    nll_sum: float  # sum of -log p over the scored tokens (nats)
    max_length: int
    stride: int
    n_windows: int
    text_tokens: int  # tokens in the whole text
    source: str = ""
    text_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _model_max_positions(model) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def perplexity(
    model,
    tokenizer,
    text: str,
    max_length: int = 1024,
    stride: int = 512,
    *,
    source: str = "",
) -> PerplexityResult:
    """exp(mean NLL) of `text` under `model`, sliding windows of max_length moved by stride.

    max_length is capped at the model's context size. Raises DataError when the text has fewer
    than 2 tokens (nothing to predict).
    """
    import torch

    if max_length < 2:
        raise ValueError("perplexity: max_length must be >= 2")
    if not 1 <= stride <= max_length:
        raise ValueError("perplexity: stride must be in 1..max_length")
    cap = _model_max_positions(model)
    if cap is not None and max_length > cap:
        max_length = cap
        stride = min(stride, max_length)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    seq_len = ids.size(1)
    if seq_len < 2:
        raise DataError("perplexity: the text has fewer than 2 tokens; give a longer text")
    device = next(model.parameters()).device
    ids = ids.to(device)
    nll_sum = 0.0
    n_tokens = 0
    n_windows = 0
    prev_end = 0
    with torch.no_grad():
        for begin in range(0, seq_len, stride):
            end = min(begin + max_length, seq_len)
            # Score positions [first, end): those no earlier window scored; position `begin`
            # itself has no context inside this window.
            first = max(prev_end, begin + 1)
            window = ids[:, begin:end]
            logits = model(input_ids=window).logits[0].float()
            logp = torch.log_softmax(logits[first - begin - 1 : end - begin - 1], dim=-1)
            targets = window[0, first - begin : end - begin]
            nll_sum -= float(logp.gather(1, targets.unsqueeze(1)).sum())
            n_tokens += int(targets.numel())
            n_windows += 1
            prev_end = end
            if end == seq_len:
                break
    return PerplexityResult(
        ppl=math.exp(nll_sum / n_tokens), n_tokens=n_tokens, nll_sum=nll_sum,
        max_length=max_length, stride=stride, n_windows=n_windows, text_tokens=seq_len,
        source=source, text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def load_text(source: str, loader: Callable[..., Any] | None = None) -> tuple[str, str]:
    """(text, label) for "bundled", "wikitext2" or a file path. `loader` replaces
    datasets.load_dataset (tests)."""
    if source == "bundled":
        return BUNDLED_HELDOUT.read_text(encoding="utf-8"), "bundled:heldout.txt"
    if source in ("wikitext2", "wikitext-2", "wikitext"):
        name, config, split = WIKITEXT2
        if loader is None:
            from datasets import load_dataset as loader  # type: ignore[no-redef]
        try:
            ds = loader(name, config, split=split)
        except Exception as e:  # offline, hub errors, missing cache: many exception types
            raise DataError(
                f"could not load WikiText-2 ({name}, {config}) from the HF hub "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                "connect to the hub, warm the HF datasets cache, or pass --perplexity bundled|PATH"
            ) from None
        return "\n\n".join(ds["text"]), f"hub:{name}/{config}/{split}"
    p = Path(source).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such text file; pass --perplexity bundled, wikitext2 or a path to a UTF-8 text file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    return text, f"file:{p}"
