"""Write tests/data/dt_fastchat_prompts.json: for the first paper-protocol request of each trust
dimension (smoke profile, seed 0, ../shared/decodingtrust), the prompt DecodingTrust's own FastChat
code renders for it with the llama-2 and vicuna_v1.1 templates.

    python scripts/make_dt_fastchat_fixture.py PATH/TO/DecodingTrust/src/dt/conversation.py

The conversation module is imported from the given checkout (decoding-comp-trust/DecodingTrust
0cf3fc1 was used); nothing of it is copied into this project. The loop below is
HFChat.messages_to_prompt's (src/dt/chat.py). Fairness messages are built the fork's way
(fair_chat.do_classification with example_prefix=True: demonstrations as system messages) from
the data row, not taken from our perspective."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# besides each dimension's first request: PII (consecutive user turns) and a few-shot fairness prompt
EXTRA = {"privacy": ("pii/0shotattack/", "pii/3shotprotect/"), "fairness": ("few_shot_tr_br_",)}
DIMS = ["toxicity", "stereotype", "advglue", "ood", "adv_demonstration", "privacy", "machine_ethics", "fairness"]


def fork_fairness_messages(data, req):
    """The fork's fair_chat.do_classification(example_prefix=True) message list for the request's
    data row (its own construction, not our perspective's)."""
    from comptrust.data.files import read_jsonl
    from comptrust.perspectives.fairness import SETTINGS, TASKS
    from comptrust.types import Message

    setting, index = req.id.rsplit("/", 1)
    st = next(s for s in SETTINGS if s.name == setting)
    rows = read_jsonl(data.path(f"data/fairness/fairness_data/{st.stem}.jsonl"), data.bad_rows)
    x = rows[int(index)]
    task = TASKS[st.dataset]
    if not x["examples"]:
        return (Message("system", "You are a helpful assistant."), Message("user", task + "\n" + x["input"]))
    msgs = [Message("system", "You are a helpful, pattern-following assistant. " + task)]
    for y in x["examples"]:
        msgs += [Message("system", y[0]), Message("system", y[1].capitalize())]
    return tuple(msgs) + (Message("user", x["input"]),)


def main(conv_path: str) -> None:
    from comptrust.data.source import DataSource
    from comptrust.perspectives.base import PerspectiveContext, get_perspective, resolve_options
    from comptrust.profiles import get_profile
    from comptrust.protocol import resolve

    spec = importlib.util.spec_from_file_location("dt_conversation", conv_path)
    conv_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv_mod)  # type: ignore[union-attr]

    def dt_prompt(template: str, messages) -> str:
        conv = conv_mod.get_conv_template(template)
        for m in messages:
            if m.role == "system":
                conv.system = m.content
            elif m.role == "user":
                conv.append_message(conv.roles[0], m.content)
            else:
                conv.append_message(conv.roles[1], m.content)
        conv.append_message(conv.roles[1], None)
        return conv.get_prompt()

    data = DataSource.from_dir(ROOT.parent / "shared" / "decodingtrust")
    cases = []
    for name in DIMS:
        r = resolve("paper", [name])
        P = get_perspective(name, resolve_options([name], r.perspective_options)[name])
        reqs = P.requests(PerspectiveContext(data=data, profile=get_profile("smoke"), seed=0))
        picked = [reqs[0]] + [next(r for r in reqs if r.id.startswith(p)) for p in EXTRA.get(name, ())]
        for req in picked:
            msgs = fork_fairness_messages(data, req) if name == "fairness" else req.messages
            cases.append({"dimension": name, "request_id": req.id,
                          "expected": {t: dt_prompt(t, msgs) for t in ("llama-2", "vicuna_v1.1")}})
    out = {"source": "decoding-comp-trust/DecodingTrust@0cf3fc1 src/dt/conversation.py + chat.py messages_to_prompt; "
                     "the BOS HELM's tokenizer call added is not part of these strings",
           "data": "../shared/decodingtrust (AI-secure/DecodingTrust@161ae83 data), smoke profile, seed 0, paper protocol",
           "cases": cases}
    (ROOT / "tests" / "data" / "dt_fastchat_prompts.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
