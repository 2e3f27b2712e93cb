"""Throughput of the OpenAI-compatible backend against a local server at 1, 4 and 16 requests
in flight.

Starts `transformers serve` on 127.0.0.1 with a local checkpoint (default: the embedded
SmolLM2-135M-Instruct) unless --base-url points at a running server, then sends the same greedy
chat requests (bundled DecodingTrust-style prompts) at each concurrency level.

    python benchmarks/openai_throughput.py [--model REF] [--base-url URL --api-model NAME]
        [--requests 32] [--max-new-tokens 32] [--concurrency 1,4,16] [--continuous-batching]

Prints, per level: wall seconds, requests/s, completion tokens/s, and whether the texts equal
the 1-in-flight texts (greedy decoding must not depend on concurrency).
"""

from __future__ import annotations

import argparse
import contextlib
import time


def prompts(n: int):
    from comptrust.data.source import DataSource
    from comptrust.perspectives.base import PerspectiveContext, get_perspective
    from comptrust.profiles import get_profile

    out = []
    for name in ("fairness", "machine_ethics", "ood", "advglue", "stereotype"):
        ctx = PerspectiveContext(data=DataSource.bundled(), profile=get_profile("quick"), seed=0, limit=n)
        out += [r.messages for r in get_perspective(name).requests(ctx) if not r.choices]
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--base-url", default=None, help="use this running server instead of starting one")
    ap.add_argument("--api-model", default=None)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--continuous-batching", action="store_true", help="start transformers serve with continuous batching")
    args = ap.parse_args()

    from comptrust.backends.base import GenItem
    from comptrust.backends.local_server import transformers_server
    from comptrust.backends.openai_compat import OpenAIBackend
    from comptrust.models.resolve import resolve_model
    from comptrust.types import GenParams

    msgs = prompts(args.requests)
    params = GenParams(max_new_tokens=args.max_new_tokens)
    items = [GenItem(f"r{i}", "", params, 0, 0, m) for i, m in enumerate(msgs)]
    levels = [int(x) for x in args.concurrency.split(",")]

    if args.base_url:
        server = contextlib.nullcontext(args.base_url)
        api_model = args.api_model or args.model
    else:
        path = resolve_model(args.model).path
        extra = ["--continuous-batching"] if args.continuous_batching else []
        server = transformers_server(path, extra_args=extra)
        api_model = str(path)
    t0 = time.perf_counter()
    with server as url:
        print(f"server {url} ready in {time.perf_counter() - t0:.1f} s; {len(items)} greedy chat requests, "
              f"max_tokens {args.max_new_tokens}{', continuous batching' if args.continuous_batching else ''}")
        OpenAIBackend(url, api_model, concurrency=1).generate(items[:1]).__next__()  # warm-up
        base_texts = None
        print(f"{'in flight':>9} {'wall s':>8} {'req/s':>7} {'tok/s':>7} {'retries':>7}  same texts as 1")
        for c in levels:
            b = OpenAIBackend(url, api_model, concurrency=c, timeout=600)
            texts = {}
            t = time.perf_counter()
            for batch in b.generate(items):
                texts.update({o.key: o.text for o in batch})
            wall = time.perf_counter() - t
            ordered = [texts[i.key] for i in items]
            base_texts = base_texts or ordered
            print(f"{c:>9} {wall:>8.2f} {len(items) / wall:>7.2f} {b.gen_tokens / wall:>7.1f} {b.retries:>7}  "
                  f"{'yes' if ordered == base_texts else 'NO'}", flush=True)
            b.close()


if __name__ == "__main__":
    main()
