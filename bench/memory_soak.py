"""The app's memory over many visitors (issue 18, item 10): `python app.py` in its own process
with two stub contestants (no vLLM), then N visitors, each a new page (a gradio_client session)
that asks one question and votes (or leaves, with --unvoted), then an idle pause. The app's RSS
(VmRSS of its process) is printed every --every visitors and after the pause.

Contenders, run alternately in one invocation: `bounded` (the app as shipped: silent pages are
forgotten after ui.session_idle_s, here 2 s) and `gradio` (sessions kept, as Gradio alone does
until 10,000). `--repeat 2` runs each twice (ABBA) so the spread of identical runs shows.

Usage: .venv/bin/python bench/memory_soak.py [--visitors 400] [--every 100] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from openai_stub import StubEndpoint  # noqa: E402  (the tests' OpenAI-compatible stub server)

CONTENDERS = {"bounded": "2", "gradio": "1000000000"}  # ui.session_idle_s


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def visit(client, voted: bool) -> None:
    """One page: a question, both answers, a vote unless `voted` is off."""
    answered = client.predict("How should I store rice?", api_name="/send")
    if voted:
        client.predict(answered[3], api_name="/vote_model_a")


def soak(label: str, idle_s: str, stubs: list[StubEndpoint], visitors: int, every: int, voted: bool,
         pause_s: float, warmup: int) -> list[tuple[str, float]]:
    """One app process; the RSS after start-up, every `every` visitors and after the pause."""
    import yaml
    from gradio_client import Client

    port = free_port()
    home = tempfile.mkdtemp(prefix=f"soak-{label}-")
    env = {**os.environ, "QWEN3ARENA_HOME": home, "QWEN3ARENA__VLLM__ENABLED": "false",
           "QWEN3ARENA__ENDPOINTS": yaml.safe_dump([{"name": s.model, "base_url": s.base_url} for s in stubs]),
           "QWEN3ARENA__UI__TRAIN_TAB": "'off'", "QWEN3ARENA__UI__SESSION_IDLE_S": idle_s,
           "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                Client(url, verbose=False)
                break
            except Exception:
                if time.monotonic() > deadline or app.poll() is not None:
                    raise RuntimeError("the app did not start") from None
                time.sleep(1)
        for _ in range(warmup):  # first use loads libraries and fills caches: not growth
            visit(Client(url, verbose=False), voted)
        time.sleep(pause_s)
        marks = [("0", rss_mib(app.pid))]
        started = time.monotonic()
        for n in range(1, visitors + 1):
            visit(Client(url, verbose=False), voted)
            if n % every == 0:
                marks.append((str(n), rss_mib(app.pid)))
                print(f"  {label}: {n} visitors, RSS {marks[-1][1]:.0f} MiB "
                      f"({(time.monotonic() - started) / n:.2f} s a visitor)", file=sys.stderr, flush=True)
        time.sleep(pause_s)
        marks.append((f"idle {pause_s:.0f} s", rss_mib(app.pid)))  # the sweep ran meanwhile
        return marks
    finally:
        app.terminate()
        app.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--unvoted", action="store_true", help="visitors leave without voting")
    parser.add_argument("--pause", type=float, default=10.0, help="idle seconds after the warm-up and at the end")
    parser.add_argument("--warmup", type=int, default=30, help="visitors before the first measurement")
    args = parser.parse_args()
    stubs = [StubEndpoint("Keep it in a cool, dry place. " * 20, model="stub-left-model"),
             StubEndpoint("Refrigerate it within two hours. " * 20, model="stub-right-model")]
    order = [name for r in range(args.repeat) for name in (CONTENDERS if r % 2 == 0 else reversed(CONTENDERS))]
    rows: list[tuple[str, list[tuple[str, float]]]] = []
    try:
        for i, name in enumerate(order):
            label = f"{name}#{i // len(CONTENDERS) + 1}"
            rows.append((label, soak(label, CONTENDERS[name], stubs, args.visitors, args.every,
                                     not args.unvoted, args.pause, args.warmup)))
    finally:
        for stub in stubs:
            stub.close()
    heads = [mark for mark, _ in rows[0][1]]
    print(f"\nApp RSS (MiB) after N {'unvoted' if args.unvoted else 'voted'} visitors, each a new page\n")
    print("| contender | " + " | ".join(heads) + " | growth (last count - 0) |")
    print("|---|" + "---|" * (len(heads) + 1))
    for label, marks in rows:
        growth = marks[-2][1] - marks[0][1]
        print(f"| {label} | " + " | ".join(f"{v:.0f}" for _, v in marks) + f" | {growth:+.0f} |")


if __name__ == "__main__":
    main()
