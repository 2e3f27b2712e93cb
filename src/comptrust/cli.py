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
    # Non-standalone mode, so a usage error (bad flag, bad value) is ours to print: one plain line
    # with the fix and exit code 2, like every ComptrustError, instead of click's rich box.
    try:
        from typer._click import exceptions as cx  # typer 0.2x vendors its own click
    except ImportError:  # older typer: plain click
        from click import exceptions as cx

    try:
        rv = app(standalone_mode=False)
    except cx.NoArgsIsHelpError as e:
        e.show()
        sys.exit(e.exit_code)
    except cx.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "comptrust"
        msg = " ".join(e.format_message().split()).rstrip(".")
        print(f"error: {msg}; see `{where} --help`", file=sys.stderr)
        sys.exit(2)
    except cx.ClickException as e:
        print(f"error: {' '.join(e.format_message().split())}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except ComptrustError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume (answers so far are saved)", file=sys.stderr)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
