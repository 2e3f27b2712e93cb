"""OpenAI-compatible backend: chat completions against any endpoint (a vLLM server, llama.cpp's
server, `transformers serve`, a hosted API).

- The endpoint applies its own chat template, so the request's messages are sent as chat
  messages; the runner keys the store on the canonical messages JSON (MessagesFormatter) and
  the endpoint's model name + base URL (the model fingerprint), never on a locally formatted
  prompt.
- One HTTP request per sample (no `n`): sample i carries its own seed, so it is the same
  whichever samples are missing, and servers that reject `n` (transformers serve) still work.
- Bounded concurrency (a thread pool over one httpx client); retries with exponential backoff
  and jitter on 429, 5xx, timeouts and connection errors; 4xx other than 429 fail at once.
- The API key comes from the environment only. It lives in one private attribute, is sent in
  the Authorization header, and is never logged, put in an exception, a repr, the store or
  results; server error text is redacted of it before it reaches a message.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from ..errors import BackendError, ConfigError
from ..types import Message
from .base import GenItem, GenOut, LoglikItem

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class MessagesFormatter:
    """Stands in for ChatFormatter when the endpoint formats: the 'prompt' that is keyed and
    shown in samples is the canonical JSON of the chat turns."""

    template_name: str = "endpoint"
    system_role_merged: bool = False
    notes: list[str] = field(default_factory=lambda: ["chat template applied by the endpoint (messages sent as chat turns)"])

    def format(self, messages: Sequence[Message]) -> str:
        return messages_json(messages)


def messages_json(messages: Sequence[Message]) -> str:
    return json.dumps([{"role": m.role, "content": m.content} for m in messages], ensure_ascii=False,
                      separators=(",", ":"))


class OpenAIBackend:
    name = "openai"
    device = "remote"
    dtype = "unknown"  # whatever the endpoint serves

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        batch_size: int = 16,
    ):
        import httpx

        if concurrency < 1:
            raise ConfigError(f"--concurrency must be >= 1, not {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.__key = os.environ.get(api_key_env) or None
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.batch_size = max(batch_size, concurrency)  # results committed per store transaction
        headers = {"Content-Type": "application/json"}
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            trust_env=False,  # never route a local endpoint through a proxy from the environment
        )
        self._lock = threading.Lock()
        self.gen_seconds = 0.0
        self.gen_tokens = 0
        self.retries = 0  # how many retries the last runs needed (benchmarks report it)

    def __repr__(self) -> str:  # the key must not show up in a repr
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, concurrency={self.concurrency})"

    def close(self) -> None:
        self._client.close()

    # -- one request -------------------------------------------------------------------------
    def _body(self, it: GenItem) -> dict:
        if not it.messages:
            raise AssertionError("the openai backend needs GenItem.messages")  # runner bug, not user input
        p = it.params
        body: dict = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in it.messages],
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
        }
        if p.temperature > 0:
            body["top_p"] = p.top_p
            if p.top_k:
                body["top_k"] = p.top_k  # not in OpenAI's API; vLLM's and TGI's servers take it
            body["seed"] = it.seed % (2**31)  # servers parse seeds as int32/int64
        if p.stop:
            body["stop"] = list(p.stop)
        return body

    def _redact(self, text: str) -> str:
        return text.replace(self.__key, "[redacted]") if self.__key else text

    def _post(self, it: GenItem) -> GenOut:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body = self._body(it)
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._lock:
                    self.retries += 1
                time.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))
            try:
                r = self._client.post(url, json=body)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout:g} s"
                continue
            except httpx.TransportError as e:
                last = f"cannot connect ({type(e).__name__})"
                continue
            if r.status_code in (401, 403):
                raise BackendError(
                    f"{self.base_url} rejected the API key (HTTP {r.status_code}); set {self.api_key_env} "
                    "to a valid key (or pick another variable with --api-key-env NAME)")
            if r.status_code in RETRY_STATUS:
                last = f"HTTP {r.status_code}"
                ra = r.headers.get("retry-after")
                if ra and ra.replace(".", "", 1).isdigit():
                    time.sleep(min(float(ra), 30.0))
                continue
            if r.status_code >= 400:
                detail = self._redact(r.text.strip().replace("\n", " "))[:200]
                raise BackendError(f"{url} answered HTTP {r.status_code}: {detail}; check --api-model and the request parameters")
            return self._parse(it, r)
        raise BackendError(
            f"endpoint {self.base_url} failed after {self.max_retries + 1} tries ({last}); check the server is up "
            "and --base-url is right (answers so far are saved; re-run to resume)")

    def _parse(self, it: GenItem, r) -> GenOut:
        try:
            data = r.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(f"{self.base_url} did not answer like an OpenAI chat completions endpoint; check --base-url (it usually ends in /v1)") from None
        for s in it.params.stop:  # servers differ in whether they trim the stop string
            cut = text.find(s)
            if cut >= 0:
                text = text[:cut]
        usage = data.get("usage") or {}
        n = usage.get("completion_tokens")
        return GenOut(it.key, text, int(n) if isinstance(n, int) else 0)

    # -- protocol ------------------------------------------------------------------------------
    def generate(self, items: list[GenItem]) -> Iterator[list[GenOut]]:
        if not items:
            return
        t0 = time.perf_counter()
        done_buf: list[GenOut] = []
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai")
        todo = iter(items)
        pending: set[Future] = set()
        failure: BaseException | None = None
        try:
            # keep at most 2x concurrency requests queued, so a failure stops the run quickly
            for it in todo:
                pending.add(pool.submit(self._post, it))
                if len(pending) >= 2 * self.concurrency:
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    try:
                        done_buf.append(f.result())
                    except BaseException as e:  # noqa: BLE001 - re-raised below once the rest is saved
                        failure = failure or e
                if failure is None:
                    for it in todo:
                        pending.add(pool.submit(self._post, it))
                        if len(pending) >= 2 * self.concurrency:
                            break
                if len(done_buf) >= self.batch_size or (done_buf and (not pending or failure)):
                    self.gen_tokens += sum(o.n_tokens for o in done_buf)
                    out, done_buf = done_buf, []
                    yield out
                if failure is not None:
                    for f in pending:
                        f.cancel()
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            # wall time: requests overlap, so per-request times would overcount
            self.gen_seconds += time.perf_counter() - t0
        if failure is not None:
            raise failure

    def loglikelihood(self, items: list[LoglikItem]) -> Iterator[list[tuple[str, tuple[float, ...]]]]:
        raise BackendError("the openai backend cannot score log-likelihood (multiple-choice) requests; use --backend hf or vllm for mmlu")

    def count_tokens(self, text: str) -> int:
        raise BackendError("the openai backend has no local tokenizer to count tokens with")
