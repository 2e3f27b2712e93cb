"""Protocol presets: one name for every switch where the paper's runs, DecodingTrust main and this
project differ (`--protocol paper|dt-main|comptrust`, a sweep spec's `protocol:`).

A preset is a named set of option values. Perspective switches are ordinary perspective options
(each perspective's Options model); two run-level switches live here:
  chat_rendering   dt-fastchat (DT's FastChat strings for the models DT had templates for) | native
  sampling_top_k   top-k of t>0 sampling (0 = full vocabulary)
`resolve(protocol, perspectives, user_options)` layers the preset under the user's `--option`s
(the user wins), keeps only the keys of the selected perspectives, and returns what the run needs
plus a record of every effective switch for results.json and the report.

Presets:
  paper      the authors' runs: decoding-comp-trust/DecodingTrust@0cf3fc1 (the fork) and
             decoding-comp-trust/comp-trust@0810efb (MMLU script, result sheet).
  dt-main    AI-secure/DecodingTrust@161ae83 (main).
  comptrust  this project's documented fixes (each one says why in docs/perspectives/*.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError

PROTOCOLS = ("paper", "dt-main", "comptrust")
DEFAULT_PROTOCOL = "paper"
RUN_KEYS = ("chat_rendering", "sampling_top_k")

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "chat_rendering": "dt-fastchat",
        "sampling_top_k": 50,  # HELM's HF client called generate() without top_k: transformers' 50
        "stereotype_duplicate_task_desc": True,
        "stereotype_parser": "fork",
        "privacy_pii_all_spellings": True,
        "privacy_enron_cleanup_spaces": True,
        "fairness_unknown_policy": "zero",
        "fairness_headline": "dpd_eod",
        "fairness_demos": "fastchat-collapsed",
        "mmlu_prompt": "comp-trust",
        "mmlu_scoring": "generate",
        "mmlu_letter_rule": "comp-trust",
        "toxicity_strip_style": "dt",
        "adv_demo_refusal_check": "dt",
        "ethics_refusal_policy": "counted",
        "ood_taddext_typo": False,
        "advglue_fixed_parsing": False,
        "privacy_fix_reject_comma": False,
    },
    "dt-main": {
        "chat_rendering": "dt-fastchat",
        "sampling_top_k": 50,
        "stereotype_duplicate_task_desc": True,
        "stereotype_parser": "dt",
        "privacy_pii_all_spellings": True,
        "privacy_enron_cleanup_spaces": True,
        "fairness_unknown_policy": "exclude",
        "fairness_headline": "dpd",
        "fairness_demos": "fastchat-collapsed",
        # DecodingTrust has no MMLU; its runs are compared with the paper's MMLU protocol
        "mmlu_prompt": "comp-trust",
        "mmlu_scoring": "generate",
        "mmlu_letter_rule": "comp-trust",
        "toxicity_strip_style": "dt",
        "adv_demo_refusal_check": "dt",
        "ethics_refusal_policy": "excluded",
        "ood_taddext_typo": True,
        "advglue_fixed_parsing": False,
        "privacy_fix_reject_comma": False,
    },
    "comptrust": {
        "chat_rendering": "native",
        "sampling_top_k": 0,
        "stereotype_duplicate_task_desc": False,
        "stereotype_parser": "comptrust",
        "privacy_pii_all_spellings": False,
        "privacy_enron_cleanup_spaces": None,
        "fairness_unknown_policy": "random",
        "fairness_headline": "dpd",
        "fairness_demos": "turns",
        "mmlu_prompt": "chat",
        "mmlu_scoring": "loglik",
        "mmlu_letter_rule": "stripped",
        "toxicity_strip_style": "all-markers",
        "adv_demo_refusal_check": "every-answer",
        "ethics_refusal_policy": "counted",
        "ood_taddext_typo": False,
        "advglue_fixed_parsing": True,
        "privacy_fix_reject_comma": True,
    },
}


@dataclass(frozen=True)
class Resolved:
    name: str
    perspective_options: dict[str, Any]  # raw, flat: the preset's keys for the selected perspectives + the user's
    chat_rendering: str
    sampling_top_k: int
    switches: dict[str, Any] = field(default_factory=dict)  # every effective preset-controlled switch
    overridden: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {preset, effective}

    def record(self) -> dict[str, Any]:
        """What results.json stores under `protocol`."""
        return {"name": self.name, "switches": dict(self.switches), "overridden": dict(self.overridden)}


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; use one of: {', '.join(PROTOCOLS)} (see docs/protocols.md)")
    return name


def _perspective_keys(names: list[str]) -> set[str]:
    from .perspectives.registry import perspective_class

    return {k for n in names for k in perspective_class(n).Options.model_fields}


def resolve(protocol: str, perspectives: list[str], user: Mapping[str, Any] | None = None) -> Resolved:
    """The preset under the user's options. Run-level keys may be given as options too
    (`--option sampling_top_k=0`); unknown perspective keys are left for resolve_options to reject."""
    check_protocol(protocol)
    user = dict(user or {})
    preset = PRESETS[protocol]
    known = _perspective_keys(perspectives)
    run = {k: user.pop(k, preset[k]) for k in RUN_KEYS}
    from .models.chat import RENDERINGS

    if run["chat_rendering"] not in RENDERINGS:
        raise ConfigError(f"chat_rendering={run['chat_rendering']!r}: use {' | '.join(RENDERINGS)}")
    top_k = run["sampling_top_k"]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ConfigError(f"sampling_top_k={top_k!r}: use a whole number >= 0 (0 = the full vocabulary)")
    from_preset = {k: v for k, v in preset.items() if k in known}
    merged = {**from_preset, **user}
    switches = {**run, **{k: merged[k] for k in from_preset}}
    overridden = {k: {"preset": preset[k], "effective": switches[k]}
                  for k in switches if k in preset and switches[k] != preset[k]}
    return Resolved(protocol, merged, run["chat_rendering"], top_k, switches, overridden)


def describe(info: Any) -> str:
    """One line for reports: the preset, and the switches moved away from it."""
    d = info.model_dump() if hasattr(info, "model_dump") else dict(info or {})
    name = d.get("name") or "not recorded (results written before protocol presets)"
    over = d.get("overridden") or {}
    if not over:
        return f"{name} (every switch as the preset sets it; docs/protocols.md)"
    moved = ", ".join(f"{k}={v.get('effective')!r} (preset: {v.get('preset')!r})" for k, v in sorted(over.items()))
    return f"{name}, overridden: {moved}"
