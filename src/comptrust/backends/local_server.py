"""Start a real OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.

`transformers serve` (transformers[serving]: fastapi + uvicorn) serving a local checkpoint,
offline, on a free loopback port. Also a fault-injecting proxy (stdlib http.server) that sits in
front of it and fails, stalls or checks the API key on demand, so retries, timeouts and 401s are
exercised against a live HTTP endpoint rather than a mock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from ..errors import BackendError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies (a killed test
    run must not leave a server behind)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _serve_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    if exe.is_file():
        return [str(exe), "serve"]
    found = shutil.which("transformers")
    if not found:
        raise BackendError("`transformers serve` is not installed; pip install 'transformers[serving]'")
    return [found, "serve"]


@contextlib.contextmanager
def transformers_server(model_dir: str | Path, *, port: int | None = None, startup_timeout: float = 120.0,
                        log_path: str | Path | None = None, extra_args: list[str] | None = None) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT/v1) of `transformers serve MODEL_DIR`."""
    import httpx

    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [*_serve_cmd(), str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
         "--log-level", "warning", *(extra_args or [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise BackendError(f"transformers serve exited with code {proc.returncode} before answering")
            try:
                if httpx.get(f"{base}/health", timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                raise BackendError(f"transformers serve did not answer on {base} within {startup_timeout:g} s")
            time.sleep(0.2)
        yield f"{base}/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log is not subprocess.DEVNULL:
            log.close()


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream` (a base URL ending in /v1).

    fail_first: answer this many requests with `fail_status` before forwarding any;
    delay: seconds to stall each request before answering (timeouts);
    require_key: answer 401 unless the Authorization header carries this key.
    Records every request's Authorization header presence in `seen_auth`.
    """

    def __init__(self, upstream: str, *, fail_first: int = 0, fail_status: int = 500, delay: float = 0.0,
                 require_key: str | None = None):
        self.upstream = upstream.rstrip("/")
        self.fail_first, self.fail_status, self.delay, self.require_key = fail_first, fail_status, delay, require_key
        self.requests = 0
        self.failed = 0
        self.seen_auth: list[bool] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FaultProxy":
        import httpx

        proxy = self
        client = httpx.Client(timeout=300, trust_env=False)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                # one request per connection, so closing the proxy never waits on an idle keep-alive
                self.close_connection = True
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization") or ""
                with proxy._lock:
                    proxy.requests += 1
                    proxy.seen_auth.append(bool(auth))
                    fail = proxy.failed < proxy.fail_first
                    if fail:
                        proxy.failed += 1
                if proxy.delay:
                    time.sleep(proxy.delay)
                if proxy.require_key is not None and auth != f"Bearer {proxy.require_key}":
                    return self._reply(401, b'{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}')
                if fail:
                    return self._reply(proxy.fail_status, b'{"error":{"message":"injected failure"}}')
                path = self.path[3:] if self.path.startswith("/v1") else self.path
                try:
                    r = client.post(proxy.upstream + path, content=body, headers={"Content-Type": "application/json"})
                except Exception:  # noqa: BLE001 - the upstream died; tell the client like a gateway would
                    return self._reply(502, b'{"error":{"message":"bad gateway"}}')
                self._reply(r.status_code, r.content, r.headers.get("content-type", "application/json"))

        class Server(ThreadingHTTPServer):
            daemon_threads = False
            block_on_close = True  # __exit__ waits for stalled requests instead of leaking them

            def handle_error(self, request, client_address) -> None:
                pass  # a client that gave up (timeout test) is expected, not news

        self._server = Server(("127.0.0.1", 0), Handler)
        self._client = client
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
