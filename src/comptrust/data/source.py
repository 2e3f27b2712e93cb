"""Where benchmark data comes from: a DecodingTrust-layout directory or the bundled mini set.

A DataSource answers "give me this relative file" (DecodingTrust's `data/...` layout) or None
when the file is absent, so a perspective can skip a sub-scenario visibly. Every file used is
recorded with its sha256 for the provenance section of results.json.
"""

from __future__ import annotations

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
            return None
        if rel not in self.used:
            self.used[rel] = file_sha256(p)
        return p

    def provenance(self) -> dict:
        return {"source": self.label, "files": dict(sorted(self.used.items())),
                "bad_rows_skipped": dict(self.bad_rows.skipped),
                "bad_row_examples": list(self.bad_rows.examples)}
