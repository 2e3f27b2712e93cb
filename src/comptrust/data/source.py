"""Where benchmark data comes from: a DecodingTrust-layout directory or the bundled mini set.

A DataSource answers "give me this relative file" (DecodingTrust's `data/...` layout) or None
when the file is absent, so a perspective can skip a sub-scenario visibly. Every file used is
recorded with its sha256 for the provenance section of results.json.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import DataError
from .files import BadRows, file_sha256

BUNDLED_ROOT = Path(str(resources.files("comptrust") / "bundled" / "decodingtrust"))


@dataclass
class DataSource:
    """A DecodingTrust-layout root (the folder that contains `data/`)."""

    root: Path
    label: str = "dir"
    bad_rows: BadRows = field(default_factory=BadRows)
    used: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    # per perspective (see recording()): the files it read and the ones it asked for but lacked
    used_by: dict[str, dict[str, str]] = field(default_factory=dict)
    missing_by: dict[str, list[str]] = field(default_factory=dict)
    _scope: str | None = None

    @classmethod
    def from_dir(cls, path: str | Path, on_bad_row: str = "fail") -> "DataSource":
        p = Path(path).expanduser()
        if not p.is_dir():
            raise DataError(f"data dir {p} does not exist; pass --data-dir pointing at a DecodingTrust checkout (the folder holding data/)")
        if not (p / "data").is_dir():
            if p.name == "data" and p.is_dir():
                p = p.parent
            else:
                raise DataError(f"data dir {p} has no data/ folder; pass the DecodingTrust root (the folder holding data/)")
        return cls(root=p.resolve(), label=f"dir:{p}", bad_rows=BadRows(on_bad_row))  # type: ignore[arg-type]

    @classmethod
    def bundled(cls, on_bad_row: str = "fail") -> "DataSource":
        return cls(root=BUNDLED_ROOT, label="bundled-mini", bad_rows=BadRows(on_bad_row))  # type: ignore[arg-type]

    def path(self, rel: str) -> Path | None:
        """The absolute path of `rel` (relative to the root, e.g. 'data/ood/style.json'), or
        None when absent. Records the file's hash when present."""
        p = self.root / rel
        if not p.is_file():
            if self._scope is not None and rel not in self.missing_by.setdefault(self._scope, []):
                self.missing_by[self._scope].append(rel)
            return None
        if rel not in self.used:
            self.used[rel] = file_sha256(p)
        if self._scope is not None:
            self.used_by.setdefault(self._scope, {})[rel] = self.used[rel]
        return p

    @contextlib.contextmanager
    def recording(self, scope: str):
        """Attribute the files read (and those found missing) inside the block to `scope`
        (a perspective), so each dimension's provenance names its own data."""
        prev, self._scope = self._scope, scope
        self.used_by.setdefault(scope, {})
        self.missing_by.setdefault(scope, [])
        try:
            yield
        finally:
            self._scope = prev

    def provenance(self, scope: str | None = None) -> dict:
        """Every file used; with `scope`, only those that perspective read (see recording())."""
        if scope is None:
            return {"source": self.label, "files": dict(sorted(self.used.items())),
                    "bad_rows_skipped": dict(self.bad_rows.skipped),
                    "bad_row_examples": list(self.bad_rows.examples)}
        files = self.used_by.get(scope, {})
        full = {str(self.root / rel) for rel in files}
        return {"source": self.label, "files": dict(sorted(files.items())),
                "bad_rows_skipped": {k: v for k, v in self.bad_rows.skipped.items() if k in full},
                "bad_row_examples": [e for e in self.bad_rows.examples if e.partition(":")[0] in full]}
