"""The `comptrust` command line.

Commands live in comptrust.commands.<name> (one module each, `register(app)`), so the CLI stays
a thin shell over library functions. Every ComptrustError becomes one line on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

import errno
import importlib
import signal
import sqlite3
import sys

import typer

from .commands import COMMAND_MODULES
from .errors import ComptrustError
from .sanitize import clean

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


def _disk_full(e: BaseException) -> bool:
    """ENOSPC / EDQUOT / EFBIG (a file-size limit), or SQLite's report of the same."""
    if isinstance(e, sqlite3.OperationalError):
        msg = str(e).lower()
        return "disk is full" in msg or "disk i/o error" in msg
    return getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class Interrupted(BaseException):
    """Ctrl-C. Not a KeyboardInterrupt, so click does not turn it into Abort (an empty line and
    'aborted', exit 1) and no library's `except KeyboardInterrupt` swallows it."""


def _on_sigint(signum, frame) -> None:
    raise Interrupted()


INTERRUPTED = "interrupted; re-run the same command to resume (answers so far are saved)"


def _error(text: object) -> None:
    # one line, control characters made visible: paths in messages are user input
    print(f"error: {clean(' '.join(str(text).split()))}", file=sys.stderr)


def main() -> None:
    old = signal.signal(signal.SIGINT, _on_sigint)
    try:
        _main()
    finally:
        signal.signal(signal.SIGINT, old)


def _main() -> None:
    # Non-standalone mode, so a usage error (bad flag, bad value) is ours to print: one plain line
    # with the fix and exit code 2, like every ComptrustError, instead of click's rich box.
    try:
        # typer >= 0.20 vendors click in a private module; only its public base class is used here
        from typer.exceptions import TyperException as ClickError
    except ImportError:  # older typer: plain click
        from click import ClickException as ClickError

    try:
        rv = app(standalone_mode=False)
    except ClickError as e:
        kinds = {c.__name__ for c in type(e).__mro__}
        if "NoArgsIsHelpError" in kinds:  # `comptrust CMD` without its arguments: CMD's help
            e.show()
            sys.exit(e.exit_code)
        if "UsageError" in kinds:
            ctx = getattr(e, "ctx", None)
            where = ctx.command_path if ctx is not None else "comptrust"
            msg = " ".join(e.format_message().split()).rstrip(".")
            _error(f"{msg}; see `{where} --help`")
            sys.exit(2)
        _error(e.format_message())
        sys.exit(e.exit_code)
    except typer.Abort as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # a KeyboardInterrupt raised by other code
            print(INTERRUPTED, file=sys.stderr)
            sys.exit(130)
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except Interrupted:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except ComptrustError as e:
        _error(e)
        sys.exit(e.exit_code)
    except (OSError, sqlite3.OperationalError) as e:
        if not _disk_full(e):
            raise
        where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
        _error(f"cannot write{where}: disk full or file-size limit ({e}); free some space and re-run the same command "
               "(answers already committed are kept)")
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
