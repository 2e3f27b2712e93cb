"""HF transformers backend.

engine="reuse" (default where the model supports it, see engine.supports_engine): our own
prefill + decode loop over the model's forward, which prefills each prompt once for all its samples
and shares the KV cache of common token prefixes (backends/engine.py).
engine="generate": transformers' generate on length-sorted, left-padded batches (the path before
the engine; kept for models the engine does not support and as the benchmark's baseline):

- greedy (t=0) or sampling (t>0) with a per-row seed: a logits processor draws each row's token
  with the engine's sampler (backends.sampling: noise keyed by the row's seed and the step), so
  sample i of a prompt is the same whatever batch it lands in
  (that is what makes a killed run resume to the same results);
- stop strings are applied during generation and trimmed from the text;
- CPU runs fp32 (bf16 matmul is ~30x slower on CPU), CUDA runs bf16;
- out-of-memory halves the batch and retries.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Iterator

from ..errors import BackendError
from ..models.resolve import ResolvedModel, default_device, load_model_and_tokenizer
from ..types import GenParams
from .base import DEFAULT_BATCH_SIZE, GenItem, GenOut, LoglikItem, finished_text


def _row_sampler_cls():
    import torch
    from transformers import LogitsProcessor

    class RowSeededSampler(LogitsProcessor):
        """Samples each row with its own seed (backends.sampling, the engine's sampler) and returns
        one-hot logits, so the (greedy) decoding loop picks exactly the sampled token."""

        def __init__(self, seeds: list[int], temperature: float, top_p: float, top_k: int = 0):
            self.seeds = list(seeds)
            self.step = 0  # generate calls the processor once per new token, for every row
            self.temperature = temperature
            self.top_p = top_p
            self.top_k = top_k

        def __call__(self, input_ids, scores):
            from .sampling import draw_tokens

            chosen = torch.tensor(draw_tokens(scores, self.seeds, [self.step] * len(self.seeds),
                                              self.temperature, self.top_k, self.top_p))
            self.step += 1
            out = torch.full_like(scores, float("-inf"))
            out[torch.arange(scores.shape[0]), chosen.to(scores.device)] = 0.0
            return out

    return RowSeededSampler


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


class HFBackend:
    name = "hf"

    def __init__(
        self,
        resolved: ResolvedModel,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = 16384,
        engine: str = "reuse",
    ):
        self.resolved = resolved
        self.device = device or default_device()
        self.model, self.tokenizer = load_model_and_tokenizer(resolved, self.device, dtype)
        self.dtype = str(self.model.dtype).replace("torch.", "")
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        self.gen_seconds = 0.0
        self.gen_tokens = 0
        if engine not in ("reuse", "generate"):
            raise ValueError(f"unknown engine {engine!r}; use reuse | generate")
        from .engine import supports_engine

        self.engine = engine if engine == "generate" or supports_engine(self.model) else "generate"

    # -- helpers -------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _batches(self, items: list, lengths: list[int]) -> Iterator[list[int]]:
        """Indices of items in length-sorted batches bounded by batch_size and a padded-token
        budget (long few-shot prompts get smaller batches)."""
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            longest = lengths[batch[0]] if batch else lengths[i]
            if batch and (len(batch) >= self.batch_size or longest * (len(batch) + 1) > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _generation_config(self, params: GenParams):
        from transformers import GenerationConfig

        return GenerationConfig(
            max_new_tokens=params.max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids,
        )

    def _run_batch(self, batch: list[GenItem]) -> list[GenOut]:
        import torch
        from transformers import LogitsProcessorList

        params = batch[0].params
        enc = self.tokenizer([b.prompt for b in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs = {}
        if params.temperature > 0:
            kwargs["logits_processor"] = LogitsProcessorList(
                [_row_sampler_cls()([b.seed for b in batch], params.temperature, params.top_p, params.top_k)]
            )
        if params.stop:
            kwargs["stop_strings"] = list(params.stop)
            kwargs["tokenizer"] = self.tokenizer
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=self._generation_config(params), **kwargs)
        new = out[:, enc["input_ids"].shape[1]:].cpu()
        results = []
        for b, row in zip(batch, new.tolist()):
            text, n = finished_text(self.tokenizer, row, self.eos_ids, params.stop)
            results.append(GenOut(b.key, text, n))
        return results

    # -- protocol ------------------------------------------------------------------------
    def generate(self, items: list[GenItem]) -> Iterator[list[GenOut]]:
        if self.engine == "reuse":
            yield from self._generate_engine(items)
            return
        by_params: dict[GenParams, list[GenItem]] = defaultdict(list)
        for it in items:
            by_params[it.params].append(it)
        for group in by_params.values():
            lengths = [self.count_tokens(it.prompt) for it in group]
            for idx in self._batches(group, lengths):
                yield self._generate_resilient([group[i] for i in idx])

    def _generate_engine(self, items: list[GenItem]) -> Iterator[list[GenOut]]:
        from .engine import Engine

        eng = Engine(self.model, self.tokenizer, self.eos_ids, device=self.device, max_rows=max(1, self.batch_size))
        it = eng.generate(items)
        while True:
            t0 = time.perf_counter()
            try:
                res = next(it)
            except StopIteration:
                return
            except (RuntimeError, MemoryError) as e:
                if not _is_oom(e) and not isinstance(e, MemoryError):
                    raise
                raise BackendError("out of memory in the generation engine; lower --batch-size or max_new_tokens") from None
            self.gen_seconds += time.perf_counter() - t0
            self.gen_tokens += sum(r.n_tokens for r in res)
            self.engine_counts = {"prefill_tokens_run": eng.prefill_tokens_run, "decode_rows_run": eng.decode_tokens_run}
            yield res

    def _generate_resilient(self, batch: list[GenItem]) -> list[GenOut]:
        try:
            t0 = time.perf_counter()
            res = self._run_batch(batch)
            self.gen_seconds += time.perf_counter() - t0
            self.gen_tokens += sum(r.n_tokens for r in res)
            return res
        except (RuntimeError, MemoryError) as e:
            if not _is_oom(e) and not isinstance(e, MemoryError):
                raise
            if len(batch) == 1:
                raise BackendError(
                    "out of memory on a single prompt; lower max_new_tokens, use a GPU with more memory, or a smaller model"
                ) from None
            self._free()
            half = len(batch) // 2
            self.batch_size = max(1, half)
            return self._generate_resilient(batch[:half]) + self._generate_resilient(batch[half:])

    def _free(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loglikelihood(self, items: list[LoglikItem]) -> Iterator[list[tuple[str, tuple[float, ...]]]]:
        """sum log p(choice | prompt) per choice (lm-eval's context/continuation split); each
        prompt runs once and the choices are scored on its KV cache."""
        from ..benign.loglik import choice_logprobs

        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            yield [(it.key, choice_logprobs(self.model, self.tokenizer, it.prompt, it.choices)) for it in chunk]
