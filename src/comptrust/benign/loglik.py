"""Log-likelihood of answer continuations after a prompt (lm-eval style multiple choice).

`choice_logprobs(model, tokenizer, prompt, choices)` returns sum log p(choice | prompt) for each
choice. The HF backend answers `Request.choices` with it, and the MMLU perspective's "loglik"
scoring reads the result from `Generation.logprobs`.

Tokenization at the prompt/choice boundary: the choice's tokens are those of
tokenize(prompt + choice) after its longest common prefix with tokenize(prompt). BPE tokenizers
glue a space to the word that follows it, so for a prompt ending in "Answer: " and the choice "A"
the token " A" is the choice's, predicted from "...Answer:" (what lm-eval gets by moving the
prompt's trailing whitespace onto the choice). Unlike lm-eval, whitespace that stays a token of its
own is not moved: a chat prompt ending in the template's "assistant\n" keeps its newline, so the
newline's probability is not charged to every choice. A token that spans the boundary counts as
the choice's.

The shared prefix is run once; the choices' tails then run as one batch on a copy of its cache.
"""

from __future__ import annotations

from typing import Sequence


def _encode(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_pairs(
    tokenizer, prompt: str, choices: Sequence[str], add_special_tokens: bool = False
) -> list[tuple[list[int], int]]:
    """For each choice: (token ids of prompt+choice, index where the choice's tokens start)."""
    out = []
    for choice in choices:
        if not choice:
            raise ValueError("choice_logprobs: empty choice string")
        ctx_ids = _encode(tokenizer, prompt, add_special_tokens)
        whole = _encode(tokenizer, prompt + choice, add_special_tokens)
        start = _lcp(ctx_ids, whole)
        if start == len(whole):  # the choice added no token (cannot happen for non-empty text)
            raise ValueError(f"choice_logprobs: choice {choice!r} adds no token after the prompt")
        out.append((whole, start))
    return out


def choice_logprobs(
    model,
    tokenizer,
    prompt: str,
    choices: Sequence[str],
    *,
    add_special_tokens: bool = False,
) -> tuple[float, ...]:
    """sum log p(choice | prompt) per choice.

    add_special_tokens=False because the runner passes an already chat-formatted prompt whose
    template writes any BOS token itself; pass True for raw text with a BOS-expecting model.
    """
    import torch

    pairs = encode_pairs(tokenizer, prompt, choices, add_special_tokens)
    p = min(start for _, start in pairs)  # the prefix shared by every choice
    if p == 0:
        raise ValueError("choice_logprobs: the prompt encodes to no token; pass add_special_tokens=True or a non-empty prompt")
    device = next(model.parameters()).device
    prefix = torch.tensor([pairs[0][0][:p]], device=device)
    with torch.no_grad():
        out = model(input_ids=prefix, use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts token p
        # Only tokens at or after a choice's own start count: a choice whose start lies past p
        # (its tokenization kept more of the prompt intact) must not be charged for prompt tokens.
        totals = [float(first[ids[p]]) if start == p else 0.0 for ids, start in pairs]
        # Tails: tokens p+1.. of each sequence need the logits at positions p..len-2.
        tails = [ids[p:-1] for ids, _ in pairs]
        width = max(len(t) for t in tails)
        if width:
            b = len(pairs)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            inp = torch.full((b, width), pad, dtype=torch.long, device=device)
            mask = torch.zeros((b, p + width), dtype=torch.long, device=device)
            mask[:, :p] = 1
            for i, t in enumerate(tails):
                if t:
                    inp[i, : len(t)] = torch.tensor(t, device=device)
                    mask[i, p : p + len(t)] = 1
            cache = out.past_key_values
            cache.batch_repeat_interleave(b)
            # Right padding: real tokens keep positions p.., pads only follow them, so the
            # causal mask keeps them out of every position that is read.
            pos = torch.arange(p, p + width, device=device).unsqueeze(0).expand(b, -1)
            logits = model(input_ids=inp, attention_mask=mask, position_ids=pos,
                           past_key_values=cache, use_cache=True).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for i, (ids, start) in enumerate(pairs):
                for k in range(max(p + 1, start), len(ids)):
                    totals[i] += float(logp[i, k - p - 1, ids[k]])
    return tuple(totals)
