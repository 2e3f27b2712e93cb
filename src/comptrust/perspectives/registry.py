"""Which perspectives exist, and the one dimension catalogue every report reads.

Perspectives are found through the entry-point group `comptrust.perspectives` (the built-ins
are declared in comptrust's pyproject.toml; an installed plugin declares its own). An entry
point whose module does not import is an error, not a silent skip, and two classes claiming
one name are an error. `register` (a class decorator) adds a class directly, e.g. in tests.

The catalogue (name, title, trust or benign, report order, heatmap position) is derived from
the registered classes, so results_schema, compare, markdown/html and charts need no list of
their own.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Mapping

from ..errors import ConfigError

GROUP = "comptrust.perspectives"

_REGISTRY: dict[str, type] = {}
_loaded = False


def _same_class(a: type, b: type) -> bool:
    # a re-imported module builds a new class object for the same definition
    return a is b or (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _check_class(cls: type, where: str) -> None:
    from .base import Perspective

    if not (isinstance(cls, type) and issubclass(cls, Perspective)):
        raise ConfigError(f"{where} is not a comptrust Perspective subclass (see docs/architecture.md)")
    for attr in ("name", "title"):
        if not isinstance(getattr(cls, attr, None), str):
            raise ConfigError(f"{where}: perspective class {cls.__qualname__} has no string {attr!r}")


def _add(cls: type, where: str) -> None:
    _check_class(cls, where)
    have = _REGISTRY.get(cls.name)
    if have is not None and not _same_class(have, cls):
        raise ConfigError(
            f"two perspectives are named {cls.name!r}: {have.__module__}.{have.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__} ({where}); uninstall or rename one")
    _REGISTRY[cls.name] = cls


def register(cls: type) -> type:
    _add(cls, f"{cls.__module__}.{cls.__qualname__}")
    _cached_catalogue.cache_clear()
    return cls


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    seen: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        # an editable install can expose the same distribution twice (dist-info + egg-info)
        if ep.name in seen:
            if seen[ep.name] != ep.value:
                raise ConfigError(f"two installed packages declare the perspective {ep.name!r} "
                                  f"({seen[ep.name]} and {ep.value}); uninstall one")
            continue
        seen[ep.name] = ep.value
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must name itself
            raise ConfigError(f"perspective {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}") from e
        if getattr(cls, "name", None) != ep.name:
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) loads a perspective named {getattr(cls, 'name', None)!r}")
        _add(cls, f"entry point {ep.name} = {ep.value}")
    if "stereotype" not in _REGISTRY:
        raise ConfigError("comptrust's built-in perspectives are not registered (stale install metadata); "
                          "reinstall it: pip install -e . (or pip install comptrust)")
    _loaded = True
    _cached_catalogue.cache_clear()


def list_perspectives() -> dict[str, type]:
    _load_entry_points()
    return dict(_REGISTRY)


def perspective_class(name: str) -> type:
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown perspective {name!r}; use one of: {', '.join(sorted(_REGISTRY))} (see `comptrust ls`)"
        ) from None


def _runtime_params(cls: type) -> set[str]:
    """Keyword-only constructor arguments: live objects (a scorer, a loader), not options."""
    out: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                out.add(p.name)
    return out


def get_perspective(name: str, options: Any = None, /, **kwargs: Any):
    """An instance of perspective `name`. Options come as a mapping / Options model, or as
    keyword arguments; keyword-only constructor arguments (score_cache, ...) pass through."""
    from .base import make_options

    cls = perspective_class(name)
    runtime = {k: kwargs.pop(k) for k in list(kwargs) if k in _runtime_params(cls)}
    if options is None or isinstance(options, Mapping):
        options = make_options(cls.Options, {**(options or {}), **kwargs}, f"perspective {name}")
    elif kwargs:
        raise TypeError("pass options either as a model or as keyword arguments, not both")
    return cls(options, **runtime)


def resolve_options(names: list[str], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Split one flat options dict (CLI --option, a spec's options:) by perspective.

    Returns {name: Options model}. A key that none of the selected perspectives declares is a
    ConfigError naming the valid keys (and the perspective it belongs to, when it is another's)."""
    from .base import make_options

    classes = {n: perspective_class(n) for n in names}
    claimed: set[str] = set()
    out = {}
    for n, cls in classes.items():
        mine = {k: v for k, v in raw.items() if k in cls.Options.model_fields}
        claimed |= set(mine)
        out[n] = make_options(cls.Options, mine, f"perspective {n}")
    unknown = [k for k in raw if k not in claimed]
    if unknown:
        valid = sorted({k for cls in classes.values() for k in cls.Options.model_fields})
        owners = {k: [n for n, c in list_perspectives().items() if k in c.Options.model_fields] for k in unknown}
        parts = [f"{k!r}" + (f" (an option of {', '.join(owners[k])}, which is not evaluated)" if owners[k] else "")
                 for k in unknown]
        raise ConfigError(f"unknown option {', '.join(parts)}; valid keys for {', '.join(names)}: "
                          f"{', '.join(valid) or '(none)'}")
    return out


def recorded_options(name: str, recorded: Mapping[str, Any] | None) -> Any:
    """The Options a run recorded for perspective `name` (a run's top-level options may hold
    other perspectives' keys too: only this one's are taken)."""
    from .base import make_options

    cls = perspective_class(name)
    mine = {k: v for k, v in (recorded or {}).items() if k in cls.Options.model_fields}
    return make_options(cls.Options, mine, f"perspective {name} (options recorded in results.json)")


# ----------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class DimensionInfo:
    name: str
    title: str  # the perspective's full title
    short_title: str  # report column header
    is_trust: bool
    order: int  # report column order
    heatmap: int  # column position in the delta heatmap


@lru_cache(maxsize=1)
def _cached_catalogue() -> tuple[DimensionInfo, ...]:
    classes = sorted(list_perspectives().values(), key=lambda c: (c.order, c.name))
    out = []
    for i, c in enumerate(classes):
        heat = c.heatmap if c.heatmap is not None else 1000 + i
        out.append(DimensionInfo(c.name, c.title, c.short_title or c.title, bool(c.is_trust), c.order, heat))
    return tuple(out)


def catalogue() -> tuple[DimensionInfo, ...]:
    """Every known dimension, in report order."""
    return _cached_catalogue()


def trust_dimensions() -> list[str]:
    return [d.name for d in catalogue() if d.is_trust]


def benign_dimensions() -> list[str]:
    return [d.name for d in catalogue() if not d.is_trust]


def report_order() -> list[str]:
    return [d.name for d in catalogue()]


def heatmap_order() -> list[str]:
    return [d.name for d in sorted(catalogue(), key=lambda d: (d.heatmap, d.order))]


def dimension_title(name: str) -> str:
    """The report column header of a dimension (its name when no installed perspective has it)."""
    return next((d.short_title for d in catalogue() if d.name == name), name)
