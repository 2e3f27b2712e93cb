"""User-facing errors.

Every failure a user can cause is a ComptrustError whose message names the bad input and
the fix. The CLI prints it as one line, exits 2 and writes nothing partial.
"""

from __future__ import annotations


class ComptrustError(Exception):
    """A failure caused by user input; str(e) is the one line the user sees."""

    exit_code = 2


class ModelRefError(ComptrustError):
    pass


class DataError(ComptrustError):
    """A data file or row is missing or malformed (the message names file and line)."""


class ConfigError(ComptrustError):
    pass


class BackendError(ComptrustError):
    pass


class CompressionError(ComptrustError):
    pass
