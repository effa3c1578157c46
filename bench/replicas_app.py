"""Two app processes on one PostgreSQL store behind a sticky-session proxy (issue 17 §2).

Starts a PostgreSQL server (qwen3arena.store.postgres), two stub contestants, and `python app.py`
processes on one database (vLLM off), then a small reverse proxy in this process that keeps each
page on one app process: by its `q3a_replica` cookie (a browser: set on the first response), else
by Gradio's session_hash (in the queue's query string or JSON body: gradio_client), else the
next process in turn. Visitors (gradio_client sessions through the proxy, --clients at once)
each ask one question and vote. Contenders, alternated (ABBA over --repeat): `one-app` (the proxy
in front of one process) and `two-apps` (in front of two). Printed: visitors a second, the
requests each process served, and whether every vote landed once in the shared database.

Usage: .venv/bin/python bench/replicas_app.py [--visitors 120] [--clients 8] [--repeat 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import free_port  # noqa: E402
from openai_stub import StubEndpoint  # noqa: E402
from qwen3arena.store import Store  # noqa: E402
from qwen3arena.store.postgres import LocalPostgres  # noqa: E402

COOKIE = "q3a_replica"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class StickyProxy:
    """A reverse proxy (Starlette + httpx, streaming) that sends each page to one app process."""

    def __init__(self, upstreams: list[str], port: int):
        self.upstreams = upstreams
        self.port = port
        self.served = [0] * len(upstreams)
        self._turn = itertools.cycle(range(len(upstreams)))
        self._server = None
        self._thread: threading.Thread | None = None

    def pick(self, cookies: dict[str, str], query: dict[str, str], body: bytes) -> tuple[int, bool]:
        """The process for this request, and whether the page is new to the proxy (set its cookie)."""
        if cookies.get(COOKIE, "").isdigit() and int(cookies[COOKIE]) < len(self.upstreams):
            return int(cookies[COOKIE]), False
        session = query.get("session_hash")
        if not session and body[:1] == b"{":
            try:
                session = json.loads(body).get("session_hash")
            except ValueError:
                session = None
        if session:
            return zlib.crc32(session.encode()) % len(self.upstreams), True
        return next(self._turn), True

    def app(self):
        import httpx
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import StreamingResponse
        from starlette.routing import Route

        client = httpx.AsyncClient(timeout=None)

        async def forward(request: Request):
            body = await request.body()
            index, new = self.pick(dict(request.cookies), dict(request.query_params), body)
            self.served[index] += 1
            url = self.upstreams[index] + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = await client.send(client.build_request(request.method, url, headers=headers, content=body),
                                         stream=True)
            response = StreamingResponse(_relay(upstream), status_code=upstream.status_code,
                                         headers={k: v for k, v in upstream.headers.items()
                                                  if k.lower() not in HOP_BY_HOP},
                                         background=None)
            if new:
                response.set_cookie(COOKIE, str(index), httponly=True, samesite="lax")
            response.background = _closer(upstream)
            return response

        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
        return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


async def _relay(upstream):
    """The upstream body as it comes; an app process closing a stream (an SSE stream Gradio ends,
    an app stopped) ends the page's stream too, as it would without the proxy."""
    import httpx

    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return


def _closer(upstream):
    from starlette.background import BackgroundTask

    return BackgroundTask(upstream.aclose)


def start_app(url: str, stubs: list[StubEndpoint], home: Path) -> tuple[subprocess.Popen, str]:
    """`python app.py` on the shared store, stub contestants, vLLM off; its process and URL."""
    import yaml

    port = free_port()
    env = {**os.environ, "QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__ENABLED": "false",
           "QWEN3ARENA__STORE__URL": url,
           "QWEN3ARENA__ENDPOINTS": yaml.safe_dump([{"name": s.model, "base_url": s.base_url} for s in stubs]),
           "QWEN3ARENA__UI__TRAIN_TAB": "'off'", "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return app, f"http://127.0.0.1:{port}"


def wait_ready(app: subprocess.Popen, url: str, timeout_s: float = 180) -> None:
    from gradio_client import Client

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            Client(url, verbose=False)
            return
        except Exception:
            if app.poll() is not None:
                raise RuntimeError(f"the app stopped: {app.stderr.read()[-2000:]}") from None  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError("the app did not start") from None
            time.sleep(1)


def visit(proxy_url: str) -> str:
    """One page through the proxy: a question, both answers, a vote; the voted battle."""
    from gradio_client import Client

    client = Client(proxy_url, verbose=False)
    answered = client.predict("How should I store rice?", api_name="/send")
    client.predict(answered[3], api_name="/vote_model_a")
    return answered[3]


def run(label: str, apps: list[str], visitors: int, clients: int) -> dict:
    proxy = StickyProxy(apps, free_port())
    proxy.start()
    try:
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        warm = visit(proxy_url)  # warm-up: the first page loads what the proxy and the apps load once
        proxy.served = [0] * len(apps)
        began = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            battles = list(pool.map(lambda _: visit(proxy_url), range(visitors)))
        elapsed = time.perf_counter() - began
    finally:
        proxy.stop()
    result = {"visitors_s": visitors / elapsed, "served": list(proxy.served), "battles": [warm, *battles]}
    print(f"  {label}: {result['visitors_s']:.2f} visitors/s, requests per app {result['served']}",
          file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=120)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="replicas-pg-")), free_port())
    server.init()
    server.start()
    stubs = [StubEndpoint(f"answer {side} " * 20, model=f"stub-{side}") for side in ("left", "right")]
    homes = [Path(tempfile.mkdtemp(prefix=f"replicas-home{i}-")) for i in range(2)]
    apps: list[subprocess.Popen] = []
    try:
        url = server.create_database("arena")
        Store(url).close()  # migrated once before the apps start (they would wait on the lock anyway)
        started = [start_app(url, stubs, home) for home in homes]
        apps = [app for app, _ in started]
        for app, app_url in started:
            wait_ready(app, app_url)
        urls = [app_url for _, app_url in started]
        names = ["one-app", "two-apps"]
        order = [n for r in range(args.repeat) for n in (names if r % 2 == 0 else names[::-1])]
        results: dict[str, list[dict]] = {n: [] for n in names}
        for name in order:
            results[name].append(run(name, urls[:1] if name == "one-app" else urls, args.visitors, args.clients))
        store = Store(url)
        votes = [v.battle_id for v in store.list_votes()]
        store.close()
        voted = [b for runs in results.values() for r in runs for b in r["battles"]]
        print(f"\n{args.visitors} visitors a run, {args.clients} at once, each asks one question and votes\n")
        print("| contender | visitors/s (each run) | median | requests per app process |")
        print("|---|---|---|---|")
        for name, runs in results.items():
            speeds = [r["visitors_s"] for r in runs]
            print(f"| {name} | {', '.join(f'{s:.2f}' for s in speeds)} | {statistics.median(speeds):.2f} | "
                  f"{'; '.join(str(r['served']) for r in runs)} |")
        missing = set(voted) - set(votes)
        print(f"\nvotes in the shared database: {len(votes)} ({len(set(votes))} battles); "
              f"votes cast through the proxy: {len(voted)}; lost: {len(missing)}; "
              f"doubled: {len(votes) - len(set(votes))}")
    finally:
        for app in apps:
            app.terminate()
        for app in apps:
            app.wait(30)
        for stub in stubs:
            stub.close()
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
