"""The `comptrust` command line.

Commands live in comptrust.commands.<name> (one module each, `register(app)`), so the CLI stays
a thin shell over library functions. Every ComptrustError becomes one line on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from .commands import COMMAND_MODULES
from .errors import ComptrustError

app = typer.Typer(
    name="comptrust",
    help="What compression does to an LLM's trustworthiness (DecodingTrust x GPTQ/AWQ/SparseGPT/Wanda).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"comptrust.commands.{_name}")
    except ModuleNotFoundError as e:  # a command module not written yet / optional extra missing
        if e.name != f"comptrust.commands.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    # standalone mode: click/typer turn usage errors (bad flags) into a usage line and exit 2.
    try:
        app()
    except ComptrustError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume (answers so far are saved)", file=sys.stderr)
        sys.exit(130)
