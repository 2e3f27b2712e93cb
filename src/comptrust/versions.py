"""Installed versions of the libraries whose behaviour a result or a variant depends on."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def library_versions(packages: tuple[str, ...], absent: str | None = None) -> dict[str, str]:
    """{package: version}; a package that is not installed maps to `absent`, or is left out."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            if absent is not None:
                out[pkg] = absent
    return out
