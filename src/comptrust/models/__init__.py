from .resolve import ResolvedModel, load_model_and_tokenizer, resolve_model

__all__ = ["ResolvedModel", "resolve_model", "load_model_and_tokenizer"]
