"""Inert text for terminals and reports: control characters in user-given names are shown as
visible escapes.

A model path, --out path or data file name may hold ESC sequences or other control characters
(a careless paste, a hostile file name). Echoed raw, they can recolour, move the cursor, retitle
the terminal or hide text. Every name we print or copy into report.md/report.html goes through
`clean`; model answers are never echoed to the terminal at all.
"""

from __future__ import annotations

import re

# C0 controls (incl. ESC, CR, LF, TAB), DEL, C1 controls (incl. the 8-bit CSI \x9b), and the
# Unicode bidi overrides/isolates that reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = m.group(0)
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def clean(text: object) -> str:
    """`text` with every control character replaced by its visible escape (\\x1b, \\u202e)."""
    return _CONTROL.sub(_escape, str(text))


_CONTROL_IN_DOCUMENT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_document(text: str) -> str:
    """A whole rendered document (report.md / report.html): the same, keeping tabs and newlines."""
    return _CONTROL_IN_DOCUMENT.sub(_escape, text)
