"""comptrust: what compression does to an LLM's trustworthiness (DecodingTrust x compression)."""

__version__ = "0.1.0"
