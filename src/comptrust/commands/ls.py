"""`comptrust ls`: perspectives, profiles, cached models."""

from __future__ import annotations

import typer

# What each built-in spec takes (README.md, "How long things take", has the measurements).
SPEC_TIMES = {
    "demo": "14 min on 2 quiet CPU cores from a fresh clone (measured 850 s incl. first-use model conversion; see README)",
    "demo-full": "not measured; about 8x the demo's eval work: 1.5-2 h on 2 CPU cores (estimate)",
    "paper": "not measured here (13b models, full profile: a GPU machine)",
}


def register(app: typer.Typer) -> None:
    @app.command("ls")
    def ls_cmd() -> None:
        """List perspectives, profiles and cached models."""
        from rich.console import Console
        from rich.table import Table

        from ..models.resolve import EMBEDDED, cache_dir
        from ..perspectives.base import list_perspectives
        from ..profiles import PROFILES

        c = Console()
        t = Table(title="perspectives", title_justify="left")
        t.add_column("name")
        t.add_column("title")
        t.add_column("kind")
        for name, cls in sorted(list_perspectives().items()):
            t.add_row(name, getattr(cls, "title", ""), "trust" if getattr(cls, "is_trust", True) else "benign")
        c.print(t)
        t = Table(title="profiles", title_justify="left")
        for col in ("name", "per sub-scenario", "samples (t>0)", "max tokens cap", "description"):
            t.add_column(col)
        for p in PROFILES.values():
            t.add_row(p.name, str(p.per_group or "all"), str(p.n_samples), str(p.max_new_tokens_cap or "none"), p.description)
        c.print(t)
        from ..spec import builtin_specs, load_spec

        t = Table(title="built-in sweep specs (comptrust sweep NAME; `demo` is what `comptrust demo` runs)", title_justify="left")
        for col in ("name", "jobs", "time", "description"):
            t.add_column(col)
        for name in builtin_specs():
            spec = load_spec(name).spec
            n_var, n_mod = sum(len(v.seeds) for v in spec.variants), len(spec.models)
            t.add_row(name, f"{n_var * n_mod} builds + {(n_var + 1) * n_mod} evals", SPEC_TIMES.get(name, ""),
                      spec.description or "")
        c.print(t)
        t = Table(title=f"cached models ({cache_dir() / 'models'})", title_justify="left")
        t.add_column("directory")
        t.add_column("size")
        models = cache_dir() / "models"
        for d in sorted(models.iterdir()) if models.is_dir() else []:
            if d.is_dir() and not d.name.startswith("."):
                size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
                t.add_row(d.name, f"{size / 1e6:.0f} MB")
        c.print(t)
        c.print("embedded models: " + ", ".join(f"embedded:{k}" for k in EMBEDDED))
