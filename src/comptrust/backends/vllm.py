"""vLLM backend: the offline `LLM` engine, for fast generation on GPUs (and vLLM's CPU build).

- Loads dense checkpoints and 4/8-bit compressed-tensors variants (what `comptrust compress` writes;
  a 3-bit variant is refused with one line before vLLM is imported: no vLLM kernel reads it)
  natively: vLLM reads the quantization config from config.json.
- Prompts go in as token ids of the already formatted prompt, tokenized without special tokens,
  exactly as the HF backend does, so the two backends see the same tokens.
- Samples of one prompt go in one request: vLLM gives child i of an n-sample request the seed
  `seed + i` and samples it exactly as a separate n=1 request with that seed, so the samples of a
  prompt whose seeds run consecutively (s, s+1, ...) are one SamplingParams(n=k, seed=s) request,
  and any other seed starts a new request. Sample i stays reproducible and independent of its
  batch and of which sibling samples are asked for (a resumed run asks for the missing ones only).
  temperature, top_p, top_k, max_tokens and stop map one to one.
- Prefix caching is on (enable_prefix_caching): prompts that share a system prompt, task text or
  few-shot demonstrations share their KV blocks, and the n samples of a request share one prefill.
- Log-likelihood requests use prompt_logprobs (sum log p(continuation | context)).
- vLLM pins its own torch and compressed-tensors, so it usually lives in its own environment
  (`pip install 'comptrust[vllm]'` there; docs/scale-out.md).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Iterator

from ..errors import BackendError
from ..models.resolve import ResolvedModel
from ..types import GenParams
from .base import GenItem, GenOut, LoglikItem


def _vllm():
    try:
        import vllm
    except ImportError as e:
        raise BackendError(
            f"vLLM is not installed here ({type(e).__name__}: {str(e)[:120]}); install it in its own environment "
            "(pip install 'comptrust[vllm]', see docs/scale-out.md) or use --backend hf") from None
    return vllm


def _first_line(e: BaseException) -> str:
    # pydantic's first line is a count ("1 validation error for ModelConfig"): keep the detail
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return " / ".join(lines[:3])[:300]


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _quantized(resolved: ResolvedModel) -> bool:
    import json

    try:
        return bool(json.loads((resolved.path / "config.json").read_text()).get("quantization_config"))
    except (OSError, ValueError):
        return False


def unloadable_reason(resolved: ResolvedModel) -> str | None:
    """Why vLLM cannot load this checkpoint, read from its config.json (no vLLM import), or None.

    vLLM's compressed-tensors weight-only (WNA16) kernels take 4- and 8-bit integer weights; a
    3-bit variant's codes are packed as one continuous bit stream that no vLLM kernel reads, and
    the engine would fail deep inside its start-up."""
    import json

    try:
        qcfg = json.loads((resolved.path / "config.json").read_text()).get("quantization_config") or {}
    except (OSError, ValueError):
        return None
    if qcfg.get("quant_method") != "compressed-tensors":
        return None
    bits = {g.get("weights", {}).get("num_bits") for g in (qcfg.get("config_groups") or {}).values()
            if isinstance(g, dict) and isinstance(g.get("weights"), dict)}
    bad = sorted(b for b in bits if isinstance(b, int) and b not in (4, 8))
    if not bad:
        return None
    return (f"{resolved.display_name or resolved.path} has {'/'.join(map(str, bad))}-bit weights, which vLLM cannot load "
            "(its int kernels take 4 or 8 bits); use --backend hf for this variant")


def _max_positions(resolved: ResolvedModel) -> int | None:
    import json

    try:
        cfg = json.loads((resolved.path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    n = cfg.get("max_position_embeddings") or (cfg.get("text_config") or {}).get("max_position_embeddings")
    return int(n) if isinstance(n, int) else None


def _eos_ids(resolved: ResolvedModel, tokenizer) -> set[int]:
    """The HF backend's stop set: generation_config's eos ids plus the tokenizer's."""
    import json

    ids: set[int] = set()
    try:
        eos = json.loads((resolved.path / "generation_config.json").read_text()).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
    except (OSError, ValueError):
        pass
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def sample_runs(items: list[GenItem]) -> list[list[GenItem]]:
    """Items grouped into vLLM requests: one request per (prompt, params) and run of consecutive
    seeds, since child i of an n-sample request is sampled with seed + i. Greedy samples of one
    prompt are all alike and need no seed. Pure; the unit tests check it without vLLM."""
    groups: dict[tuple, list[GenItem]] = defaultdict(list)
    for it in items:
        groups[(it.prompt, it.params)].append(it)
    runs: list[list[GenItem]] = []
    for (_, params), group in groups.items():
        if params.temperature == 0:
            runs.extend([it] for it in group)  # greedy: n=1 each (vLLM would sample n>1 greedy copies too)
            continue
        group = sorted(group, key=lambda it: it.seed % (2**63))
        run = [group[0]]
        for it in group[1:]:
            if it.seed % (2**63) == run[-1].seed % (2**63) + 1:
                run.append(it)
            else:
                runs.append(run)
                run = [it]
        runs.append(run)
    return runs


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        resolved: ResolvedModel,
        *,
        device: str | None = None,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        batch_size: int = 256,
        max_model_len: int | None = None,
        memory_fraction: float | None = None,
        seed: int = 0,
    ):
        reason = unloadable_reason(resolved)  # before importing vLLM: the refusal needs no engine
        if reason:
            raise BackendError(reason)
        vllm = _vllm()
        self.resolved = resolved
        self.device = device or ("cuda" if _cuda_available() else "cpu")
        on_cpu = self.device == "cpu"
        # CPU: fp32 like the HF backend (bf16 matmul is slow there and would change greedy text);
        # GPU: what the checkpoint says (bf16 for most; quantized variants pick their kernels).
        # Quantized (compressed-tensors) variants on CPU run bf16: the only dtype vLLM's CPU int
        # kernels implement; their greedy text can then differ from the HF backend's fp32.
        # vLLM's CPU kernels for packed int weights (cpu_gemm_wna16) exist for bf16 only
        quantized = _quantized(resolved)
        dtype = dtype or ("auto" if not on_cpu else "bfloat16" if quantized else "float32")
        if memory_fraction is None:
            # on CPU the "gpu" memory fraction reserves host RAM for the KV cache; keep it small
            memory_fraction = float(os.environ.get("COMPTRUST_VLLM_MEMORY_FRACTION", 0.15 if on_cpu else 0.85))
        kwargs = dict(
            model=str(resolved.path), tokenizer=str(resolved.path), dtype=dtype, seed=seed,
            tensor_parallel_size=tensor_parallel_size, trust_remote_code=resolved.trust_remote_code,
            gpu_memory_utilization=memory_fraction,
            enable_prefix_caching=True,  # shared system prompts / few-shot demos prefill once
        )
        max_model_len = max_model_len or int(os.environ.get("COMPTRUST_VLLM_MAX_MODEL_LEN", 0)) or None
        if max_model_len or on_cpu:
            # CPU: bound the KV cache reservation, within what the model's positions allow
            kwargs["max_model_len"] = min(max_model_len or 4096, _max_positions(resolved) or 4096)
        if on_cpu:
            kwargs["enforce_eager"] = True  # no graph capture/compile: minutes saved, nothing lost on CPU
        try:
            self.llm = vllm.LLM(**kwargs)
        except (ValueError, RuntimeError, OSError) as e:
            raise BackendError(
                f"vLLM could not load {resolved.path} ({type(e).__name__}: {_first_line(e)}); "
                "check the checkpoint is one vLLM supports on this device, or use --backend hf") from None
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_ids = _eos_ids(resolved, self.tokenizer)
        self.dtype = str(getattr(self.llm.llm_engine.model_config, "dtype", dtype)).replace("torch.", "")
        self.batch_size = batch_size
        self.max_model_len = int(getattr(self.llm.llm_engine.model_config, "max_model_len", 0) or 0)
        self.gen_seconds = 0.0
        self.gen_tokens = 0

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _ids(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def _sampling(self, params: GenParams, seed: int, n: int = 1):
        from vllm import SamplingParams

        greedy = params.temperature == 0
        return SamplingParams(
            n=n, temperature=params.temperature, top_p=1.0 if greedy else params.top_p,
            top_k=params.top_k if params.top_k > 0 and not greedy else -1,  # -1: vLLM's "off"
            max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
            seed=None if greedy else seed % (2**63), skip_special_tokens=True,
        )

    def _check_length(self, ids: list[int]) -> None:
        if self.max_model_len and len(ids) + 1 > self.max_model_len:
            raise BackendError(
                f"a prompt of {len(ids)} tokens does not fit vLLM's max_model_len {self.max_model_len}; "
                "raise it (COMPTRUST_VLLM_MAX_MODEL_LEN) or use --backend hf")

    # -- protocol ------------------------------------------------------------------------------
    def generate(self, items: list[GenItem]) -> Iterator[list[GenOut]]:
        runs = sample_runs(items)
        batch: list[list[GenItem]] = []
        size = 0
        for run in runs:
            if batch and size + len(run) > self.batch_size:
                yield self._run_batch(batch)
                batch, size = [], 0
            batch.append(run)
            size += len(run)
        if batch:
            yield self._run_batch(batch)

    def _run_batch(self, runs: list[list[GenItem]]) -> list[GenOut]:
        prompts = []
        for run in runs:
            ids = self._ids(run[0].prompt)
            self._check_length(ids)
            prompts.append({"prompt_token_ids": ids})
        sps = [self._sampling(run[0].params, run[0].seed, len(run)) for run in runs]
        t0 = time.perf_counter()
        try:
            outs = self.llm.generate(prompts, sps, use_tqdm=False)
        except Exception as e:  # noqa: BLE001 - ValueError (refused), EngineDeadError (unsupported kernel, OOM)
            raise BackendError(f"vLLM failed on a batch ({type(e).__name__}: {_first_line(e)}); use --backend hf for this model") from None
        self.gen_seconds += time.perf_counter() - t0
        results = []
        for run, o in zip(runs, outs):
            # child i of the request is the sample seeded seed + i (outputs come back in child order)
            for b, c in zip(run, sorted(o.outputs, key=lambda c: c.index)):
                results.append(self._out(b, list(c.token_ids)))
        self.gen_tokens += sum(r.n_tokens for r in results)
        return results

    def _out(self, b: GenItem, ids: list[int]) -> GenOut:
        for j, t in enumerate(ids):  # the HF backend counts and decodes the tokens before EOS
            if t in self.eos_ids:
                ids = ids[:j]
                break
        # decode the ids ourselves, as the HF backend does: vLLM's incremental detokenizer
        # holds back a trailing partial UTF-8 sequence, which would make texts differ
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for s in b.params.stop:  # same trimming as the HF backend
            cut = text.find(s)
            if cut >= 0:
                text = text[:cut]
        return GenOut(b.key, text, len(ids))

    def loglikelihood(self, items: list[LoglikItem]) -> Iterator[list[tuple[str, tuple[float, ...]]]]:
        """sum log p(choice | prompt) per choice, with the HF backend's context/continuation split."""
        from vllm import SamplingParams

        rows: list[tuple[int, list[int], int]] = []
        for i, it in enumerate(items):
            ctx = self._ids(it.prompt)
            for c in it.choices:
                full = self._ids(it.prompt + c)
                k = 0
                while k < min(len(ctx), len(full)) and ctx[k] == full[k]:
                    k += 1
                k = min(k, len(full) - 1)
                self._check_length(full)
                rows.append((i, full, len(full) - k))
        sp = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=1)
        scores: list[list[float]] = [[] for _ in items]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            outs = self.llm.generate([{"prompt_token_ids": r[1]} for r in chunk], sp, use_tqdm=False)
            for (i, seq, n), o in zip(chunk, outs):
                lps = o.prompt_logprobs  # per prompt position: {token_id: Logprob}; None at 0
                scores[i].append(float(sum(lps[p][seq[p]].logprob for p in range(len(seq) - n, len(seq)))))
        yield [(it.key, tuple(scores[i])) for i, it in enumerate(items)]
