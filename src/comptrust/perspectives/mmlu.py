"""MMLU (benign accuracy), 5-shot, as a dimension of our own pipeline.

How it reaches the model (option `mmlu_prompt`, set by the protocol preset): `comp-trust` sends
comp-trust's mmlu_autogptq.py prompt as raw text with BOS and no chat template (its header has
two spaces, 'about  <subject>.'); `chat` makes the whole Hendrycks 5-shot prompt (subject
header, five solved dev questions, the test question ending in "Answer:") ONE user message
through the model's chat template.

Scoring (option `mmlu_scoring`):
  loglik   (default) lm-eval style: the request carries choices (" A", " B", " C", " D"); the
           backend returns sum log p(choice | formatted prompt); the prediction is the argmax.
           Every question gets a prediction, so small models that ramble are not scored on
           format-following, dense-vs-variant deltas measure knowledge, and it costs one forward
           pass per question instead of a decode loop. This is the number lm-eval and the Open
           LLM Leaderboard report.
  generate comp-trust (paper-faithful): greedy decoding, `mmlu_max_new_tokens` (default 16, as
           the script); the prediction is the first character of the stripped output; anything
           but A-D is wrong and counted as a refusal.
Accuracy is weighted by questions (the paper's sample-weighted mean over subjects); the macro
mean over subjects and lm-eval's four categories are reported too.

Other options: mmlu_source = auto | bundled | hub | <dir>   (auto: the bundled fixture when the
data source is the bundled mini set, <data-dir>/data/mmlu when present, else the hub
`cais/mmlu`); mmlu_ntrain = 5 (demonstrations per prompt, the first k dev questions of the
subject, as Hendrycks does). Constructor option hub_loader replaces datasets.load_dataset.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from pydantic import Field

from ..benign.mmlu_data import CATEGORIES, LETTERS, MMLUData, build_prompt, header, load_bundled, load_hub, load_local
from ..profiles import stratified_sample
from ..errors import ConfigError
from ..types import DimensionResult, GenParams, Generation, Message, Request, SampleScore, stable_hash
from .base import Perspective, PerspectiveContext, PerspectiveOptions
from .classification import capped_tokens

CHOICES = (" A", " B", " C", " D")
SCORING_MODES = ("loglik", "generate")
DEFAULTS: dict[str, Any] = {
    "mmlu_scoring": "loglik",
    "mmlu_source": "auto",
    "mmlu_ntrain": 5,
    "mmlu_max_new_tokens": 16,
}


def parse_letter(text: str, rule: str = "stripped") -> str | None:
    """The prediction letter, or None (counted as refusal).
    comp-trust: mmlu_autogptq.py's `outputs.replace("</s>", "").lower()[0].upper()`, no strip
        (a leading space is no answer; an empty output, which raised there, is None here);
    stripped: the first character of the stripped output."""
    if rule == "comp-trust":
        c = text.replace("</s>", "").lower()[:1].upper()
    else:
        c = text.strip()[:1]
    return c if c in LETTERS else None


def comptrust_header(subject: str) -> str:
    """comp-trust's gen_prompt header: format_subject() joins the words with a leading space, so
    the sentence reads 'about  <subject>.' (two spaces)."""
    return "The following are multiple choice questions (with answers) about {}.\n\n".format(
        "".join(" " + w for w in subject.split("_")))


class MMLUOptions(PerspectiveOptions):
    mmlu_scoring: Literal["loglik", "generate"] = DEFAULTS["mmlu_scoring"]  # SCORING_MODES
    mmlu_source: str = DEFAULTS["mmlu_source"]
    mmlu_ntrain: int = Field(DEFAULTS["mmlu_ntrain"], ge=0)
    mmlu_max_new_tokens: int = Field(DEFAULTS["mmlu_max_new_tokens"], ge=1)
    # chat: the prompt is one user turn through the model's chat template (comptrust);
    # comp-trust: mmlu_autogptq.py's raw text (its two-space header) with the tokenizer's BOS, no template
    mmlu_prompt: Literal["chat", "comp-trust"] = "chat"
    mmlu_letter_rule: Literal["stripped", "comp-trust"] = "stripped"  # see parse_letter
    # comp-trust drops demonstrations while Hendrycks' crop (the first 2,048 GPT-2 BPE tokens)
    # changes the prompt; it needs a local GPT-2 tokenizer directory (nothing is downloaded)
    mmlu_crop_tokenizer: str | None = None
    mmlu_crop_tokens: int = Field(2048, ge=1)


class MMLU(Perspective, name="mmlu", title="MMLU", is_trust=False, order=90, heatmap=1, options=MMLUOptions):
    bootstrap_mean_key: ClassVar[str | None] = "correct"  # score == 100 * mean(correct)

    def __init__(self, options: Any = None, *, score_cache: Any = None,
                 hub_loader: Callable[..., Any] | None = None) -> None:
        super().__init__(options, score_cache=score_cache)
        self.hub_loader = hub_loader  # replaces datasets.load_dataset (tests)

    # ------------------------------------------------------------ options and data

    def _opts(self, ctx: PerspectiveContext) -> dict[str, Any]:
        return self.options.model_dump()

    def load(self, ctx: PerspectiveContext) -> MMLUData:
        src = str(self._opts(ctx)["mmlu_source"])
        bad = ctx.data.bad_rows
        if src == "auto":
            local = ctx.data.root / "data" / "mmlu"
            if ctx.data.label == "bundled-mini":
                src = "bundled"
            elif local.is_dir():
                return load_local(local, bad)
            else:
                src = "hub"
        if src == "bundled":
            return load_bundled(bad)
        if src == "hub":
            return load_hub(self.hub_loader, bad)
        return load_local(Path(src), bad)

    # ------------------------------------------------------------ build

    def requests(self, ctx: PerspectiveContext) -> list[Request]:
        o = self._opts(ctx)
        data = self.load(ctx)
        ctx.note(f"MMLU source: {data.source}; {len(data.test)} test questions in {len(data.subjects)} subjects")
        if data.source == "bundled":
            ctx.note("MMLU data is comptrust's bundled fixture (our own questions), not MMLU: "
                     "its accuracy is a pipeline check, not a benchmark figure")
        k = o["mmlu_ntrain"]
        for subject in data.subjects:
            have = len(data.dev.get(subject, []))
            if have < k:
                ctx.note(f"MMLU {subject}: only {have} of {k} dev demonstrations available; prompts use {have}")
        items = stratified_sample(data.test, lambda q: q.subject, ctx.profile.per_group, ctx.seed, ctx.limit)
        loglik = o["mmlu_scoring"] == "loglik"
        if loglik:
            params = GenParams(max_new_tokens=1)
            ctx.note("MMLU scoring: loglik (argmax of log p(' A'..' D' | prompt), lm-eval style)")
        else:
            n_new = capped_tokens(o["mmlu_max_new_tokens"], ctx, "mmlu_max_new_tokens is")
            params = GenParams(max_new_tokens=n_new, temperature=0.0)
            rule = ("first character of the lower-cased output, upper-cased (comp-trust)"
                    if self.options.mmlu_letter_rule == "comp-trust" else "first character of the stripped output")
            ctx.note(f"MMLU scoring: generate (greedy, {n_new} new tokens, {rule}; not A-D = wrong and "
                     "counted as refusal, as comp-trust)")
        raw = self.options.mmlu_prompt == "comp-trust"
        ctx.note("MMLU prompt: " + ("comp-trust's raw text (header 'about  <subject>.', BOS, no chat template; "
                                    "mmlu_prompt=comp-trust)" if raw else
                                    "one user turn through the model's chat template (mmlu_prompt=chat)"))
        count = self._crop_counter()
        limit = self.options.mmlu_crop_tokens
        if count is None:
            ctx.note(f"MMLU prompts are not cropped to {limit} tokens (comp-trust drops demonstrations until "
                     "Hendrycks' GPT-2 crop leaves the prompt whole); pass mmlu_crop_tokenizer=<local GPT-2 "
                     "tokenizer dir> to do so")
        cropped = 0
        seen: Counter[str] = Counter()
        out = []
        for q in items:
            base = f"mmlu/{q.subject}/{stable_hash([q.question, list(q.choices), q.answer], 12)}"
            seen[base] += 1
            rid = base if seen[base] == 1 else f"{base}-{seen[base]}"
            def make(n: int) -> str:
                p = build_prompt(q, data.dev.get(q.subject, [])[:n])
                return comptrust_header(q.subject) + p[len(header(q.subject)):] if raw else p

            n_demo = min(k, len(data.dev.get(q.subject, [])))
            prompt = make(n_demo)
            # comp-trust: `while crop(prompt) != prompt: k -= 1` (a lossless BPE: longer than the limit)
            while count is not None and n_demo > 0 and count(prompt) > limit:
                n_demo -= 1
                prompt = make(n_demo)
            cropped += n_demo < min(k, len(data.dev.get(q.subject, [])))
            out.append(Request(
                id=rid, group=q.subject, messages=(Message("user", prompt),), params=params,
                meta={"subject": q.subject, "answer": q.answer_letter, "scoring": o["mmlu_scoring"], "where": q.where},
                choices=CHOICES if loglik else (), raw_prompt=raw,
            ))
        if cropped:
            ctx.note(f"MMLU: {cropped} prompts use fewer demonstrations to fit {limit} tokens (comp-trust's crop)")
        return out

    def _crop_counter(self) -> Callable[[str], int] | None:
        ref = self.options.mmlu_crop_tokenizer
        if not ref:
            return None
        from transformers import AutoTokenizer  # heavy; only when asked for

        try:
            tok = AutoTokenizer.from_pretrained(ref, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"mmlu_crop_tokenizer={ref!r}: not a local tokenizer directory ({type(e).__name__}); "
                              "pass a folder holding GPT-2's tokenizer files") from None
        return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------ score

    def score(self, gen: Generation) -> SampleScore:
        req = gen.request
        answer = req.meta["answer"]
        if req.choices and gen.logprobs:
            if len(gen.logprobs) != len(req.choices):
                raise ValueError(f"{req.id}: {len(gen.logprobs)} logprobs for {len(req.choices)} choices")
            best = max(range(len(gen.logprobs)), key=lambda i: (gen.logprobs[i], -i))  # ties -> first
            pred = LETTERS[best]
            return SampleScore(req.id, req.group, {"correct": float(pred == answer)}, refusal=0.0,
                               parsed=pred, meta={"mode": "loglik", "logprobs": list(gen.logprobs)})
        if not gen.texts:
            raise ValueError(f"{req.id}: generation has neither logprobs nor texts")
        preds = [parse_letter(t, self.options.mmlu_letter_rule) for t in gen.texts]
        n = len(preds)
        correct = sum(p == answer for p in preds) / n
        refusal = sum(p is None for p in preds) / n
        # A backend that cannot score log-likelihoods may answer a loglik request with text.
        mode = "generate-fallback" if req.choices else "generate"
        return SampleScore(req.id, req.group, {"correct": correct}, refusal=refusal,
                           parsed=preds[0] if n == 1 else preds, meta={"mode": mode})

    # ------------------------------------------------------------ aggregate

    def aggregate(self, scores: list[SampleScore], ctx: PerspectiveContext) -> DimensionResult:
        notes = list(ctx.notes)
        if not scores:
            notes.append("MMLU: no scored questions")
            return DimensionResult(self.name, None, None, notes=notes)
        by_subject: dict[str, list[SampleScore]] = defaultdict(list)
        for s in scores:
            by_subject[s.group].append(s)
        per_subject = {}
        for subj, ss in sorted(by_subject.items()):
            c = sum(s.values["correct"] for s in ss)
            per_subject[subj] = {"accuracy": 100.0 * c / len(ss), "n": len(ss), "correct": c,
                                 "refusal_rate": sum(s.refusal for s in ss) / len(ss),
                                 "category": CATEGORIES.get(subj, "unknown")}
        total = len(scores)
        acc = 100.0 * sum(s.values["correct"] for s in scores) / total
        cats: dict[str, list[SampleScore]] = defaultdict(list)
        for s in scores:
            cats[CATEGORIES.get(s.group, "unknown")].append(s)
        categories = {c: 100.0 * sum(s.values["correct"] for s in ss) / len(ss) for c, ss in sorted(cats.items())}
        modes = Counter(s.meta.get("mode", "?") for s in scores)
        if modes.get("generate-fallback"):
            notes.append(f"MMLU: {modes['generate-fallback']} loglik requests were answered with text by the "
                         "backend and scored by the first-letter rule")
        return DimensionResult(
            dimension=self.name,
            score=acc,
            refusal_rate=sum(s.refusal for s in scores) / total,
            subscores={subj: v["accuracy"] for subj, v in per_subject.items()},
            counts={"questions": total, "subjects": len(per_subject),
                    "refusals": int(round(sum(s.refusal for s in scores)))},
            notes=notes,
            extra={"per_subject": per_subject, "categories": categories,
                   "macro_accuracy": sum(v["accuracy"] for v in per_subject.values()) / len(per_subject),
                   "scoring_modes": dict(modes)},
        )
