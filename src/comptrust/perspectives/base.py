"""The perspective contract: typed options -> build requests -> score responses -> aggregate.

A perspective (one trust dimension, or a benign task) subclasses `Perspective`:

    class Options(PerspectiveOptions):          # its switches; unknown keys are an error
        mydim_strict: bool = False

    class MyDim(Perspective, name="mydim", title="My dimension", order=85, version="1", options=Options):
        # name      registry key, the entry-point name
        # title     full title; short_title: the report column header (default: title)
        # is_trust  counts in the overall trust mean (default True; False: a benign task)
        # order     report column order (built-ins: 10..90); heatmap: position in the delta
        #           heatmap (default None: after the others, by order)
        # version   bump when requests/score/aggregate change (default "1")
        # (the same names as class attributes work too)

        def requests(self, ctx) -> list[Request]: ...          (pure in ctx and self.options)
        def score(self, gen) -> SampleScore: ...               (one request's answers)
        def aggregate(self, scores, ctx) -> DimensionResult: ...

and is declared as an entry point in the group `comptrust.perspectives` (built-ins in
comptrust's own pyproject.toml; a plugin in its own package). docs/architecture.md walks
through adding one.

Options, one channel: `--option k=v` / a spec's `options:` -> `resolve_options(names, raw)`
splits the flat dict by each selected perspective's Options fields (a key no selected
perspective knows is a ConfigError naming the valid keys) -> `get_perspective(name, options)`
-> `self.options` (a frozen pydantic model) is the only place requests, score and aggregate
read a switch from. The effective options (defaults filled in) are recorded per dimension in
results.json, and the report re-aggregates with exactly those.

Optional hooks, each with a default here (the runner and report call them unconditionally):
  check()                 raise ComptrustError on a bad setup before any work (default: nothing)
  score_many(gens)        score a batch at once (default: score() on each)
  sample_utility(s)       per-request utility, higher = more trustworthy; ranks the
                          worst-regressing samples in reports (default: None = not defined)
  bootstrap_mean_key      set when aggregate().score == mean(values[key]) * 100, which lets the
                          bootstrap run vectorised (default: None)
  deviations(preset)      "key=value" for each option that differs from the protocol preset's
                          value or its default (computed from the Options model); results.json
                          lists them under provenance.deviations

`aggregate` must be a pure function of the list of SampleScores (plus ctx and self.options),
because the statistics module calls it on bootstrap resamples of that list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from ..data.source import DataSource
from ..errors import ConfigError
from ..profiles import Profile
from ..types import DimensionResult, Generation, Request, SampleScore


@dataclass
class PerspectiveContext:
    data: DataSource
    profile: Profile
    seed: int = 0  # sampling of prompts (profiles) and sampling seed of t>0 generations
    limit: int | None = None  # cap on the number of requests (after stratified sampling)
    notes: list[str] = field(default_factory=list)  # filled by requests(): skipped parts, fallbacks

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class PerspectiveOptions(BaseModel):
    """Base of every perspective's options: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _option_error(cls: type[PerspectiveOptions], who: str, e: ValidationError) -> ConfigError:
    valid = ", ".join(sorted(cls.model_fields)) or "(none)"
    parts = []
    for err in e.errors():
        key = ".".join(str(x) for x in err["loc"]) or "?"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown option {key!r}")
        else:
            parts.append(f"option {key}={err.get('input')!r}: {err['msg']}")
    return ConfigError(f"{who}: {'; '.join(parts)}; valid keys: {valid}")


def make_options(cls: type[PerspectiveOptions], raw: Mapping[str, Any], who: str) -> PerspectiveOptions:
    try:
        return cls.model_validate(dict(raw))
    except ValidationError as e:
        raise _option_error(cls, who, e) from None


class Perspective:
    """Base class of every perspective; see the module docstring for the contract."""

    name: ClassVar[str]
    title: ClassVar[str]
    short_title: ClassVar[str | None] = None  # report column header; None: title
    is_trust: ClassVar[bool] = True
    order: ClassVar[int] = 1000
    heatmap: ClassVar[int | None] = None
    version: ClassVar[str] = "1"
    Options: ClassVar[type[PerspectiveOptions]] = PerspectiveOptions
    bootstrap_mean_key: ClassVar[str | None] = None

    def __init_subclass__(cls, *, name: str | None = None, title: str | None = None, short_title: str | None = None,
                          is_trust: bool | None = None, order: int | None = None, heatmap: int | None = None,
                          version: str | None = None, options: type[PerspectiveOptions] | None = None,
                          **kw: Any) -> None:
        """The catalogue entry as class keywords:
        `class Ood(Perspective, name="ood", title="...", order=40, options=OodOptions)`."""
        super().__init_subclass__(**kw)
        given = {"name": name, "title": title, "short_title": short_title, "is_trust": is_trust, "order": order,
                 "heatmap": heatmap, "version": version, "Options": options}
        for attr, value in given.items():
            if value is not None:
                setattr(cls, attr, value)

    def __init__(self, options: PerspectiveOptions | Mapping[str, Any] | None = None, *,
                 score_cache: Any = None, **option_kwargs: Any) -> None:
        """options: this perspective's Options model, or a mapping / keyword arguments validated
        into one. score_cache: the store's score cache (a scorer may skip texts it has seen)."""
        if isinstance(options, PerspectiveOptions):
            if not isinstance(options, self.Options) or option_kwargs:
                raise TypeError(f"{self.name}: options must be one {self.Options.__name__}, not mixed with keywords")
        else:
            options = make_options(self.Options, {**(options or {}), **option_kwargs}, f"perspective {self.name}")
        self.options = options
        self.score_cache = score_cache

    # ---------------------------------------------------------------- required

    def requests(self, ctx: PerspectiveContext) -> list[Request]:
        raise NotImplementedError

    def score(self, gen: Generation) -> SampleScore:
        raise NotImplementedError

    def aggregate(self, scores: list[SampleScore], ctx: PerspectiveContext) -> DimensionResult:
        raise NotImplementedError

    # ---------------------------------------------------------------- optional hooks

    def check(self) -> None:
        """Raise a ComptrustError on a bad setup (e.g. an unusable scorer) before any work."""

    def score_many(self, gens: list[Generation]) -> list[SampleScore]:
        return [self.score(g) for g in gens]

    def sample_utility(self, s: SampleScore) -> float | None:
        return None

    def deviations(self, preset: Mapping[str, Any] | None = None) -> list[str]:
        """'key=value' for each option that differs from the preset's value (or its default)."""
        return [d.partition(": ")[2] for d in option_deviations({self.name: self.options}, preset)]

    def effective_options(self) -> dict[str, Any]:
        return self.options.model_dump(mode="json")

    @property
    def scorer_id(self) -> str:
        """Names this perspective's scores in the score cache: a new version never reuses old ones."""
        return f"{self.name}@{self.version}"


def option_deviations(options: Mapping[str, PerspectiveOptions], preset: Mapping[str, Any] | None = None) -> list[str]:
    """'dimension: key=value' for every effective option that differs from its baseline: the
    protocol preset's value where the preset sets the key, else the option's default."""
    preset = preset or {}
    out = []
    for name, opts in options.items():
        for k, f in type(opts).model_fields.items():
            v = getattr(opts, k)
            base = preset[k] if k in preset else f.get_default(call_default_factory=True)
            if v != base and not (isinstance(v, tuple) and list(v) == base):
                shown = ",".join(map(str, v)) if isinstance(v, (tuple, list)) else v
                out.append(f"{name}: {k}={shown}")
    return out


# The registry and the dimension catalogue live in .registry; re-exported here because
# callers import them from this module.
from .registry import (  # noqa: E402
    DimensionInfo,
    catalogue,
    dimension_title,
    get_perspective,
    list_perspectives,
    register,
    resolve_options,
)

__all__ = [
    "DimensionInfo", "Perspective", "PerspectiveContext", "PerspectiveOptions", "catalogue", "option_deviations",
    "dimension_title", "get_perspective", "list_perspectives", "make_options", "register",
    "resolve_options",
]
