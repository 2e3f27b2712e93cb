"""Benign performance beside the trust scores: MMLU data and prompts, log-likelihood scoring of
answer choices, sliding-window perplexity, and a bridge to lm-evaluation-harness.

Imports stay light here; torch and lm-eval load inside the functions that need them.
"""

from .loglik import choice_logprobs
from .perplexity import PerplexityResult, load_text, perplexity

__all__ = ["choice_logprobs", "perplexity", "PerplexityResult", "load_text"]
