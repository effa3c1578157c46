"""Replicas (issue 17 §3): how long a second vLLM replica takes to start, how long an adapter
takes to join both through the resolver, and requests/s balanced over two replicas against one.

Two real vLLM CPU servers of the embedded tiny Qwen3 (VLLMReplicas, vllm.replicas: 2). The
first starts alone; the second starts while the first is up and idle. Then the concise adapter
joins (placed in the shared directory, checked with one request on one replica). Load: the
arena's mix (half base, half adapter requests), `--requests` answers of `--tokens` new tokens
(ignore_eos) from `--concurrency` threads through the app's client (stream_chat), first with the
endpoint listing one replica, then both, `--rounds` times alternately.

Usage: .venv/bin/python bench/replicas.py [--requests 48] [--concurrency 8] [--tokens 64] [--rounds 2]
                                          [--vllm-binding]
On a 2-core machine two replicas share the same two cores: expect little gain.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qwen3arena.config import GenerationParams, VLLMSettings  # noqa: E402
from qwen3arena.embedded import ensure_embedded_models  # noqa: E402
from qwen3arena.procs import process_tree  # noqa: E402
from qwen3arena.serve import ChatResult, Endpoint, stream_chat  # noqa: E402
from qwen3arena.serve.balance import BALANCER  # noqa: E402
from qwen3arena.serve.replicas import VLLMReplicas  # noqa: E402

BASE, ADAPTER = "tiny-qwen3-base", "tiny-qwen3-concise"
PROMPTS = ["How long does cooked rice keep in the fridge?", "Can I freeze milk?", "How should I store onions?",
           "How do I cook shrimp?", "Can I freeze bread?", "How should I store berries?"]


def free_ports(n: int) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        try:
            for port in range(first, first + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no consecutive free ports")


def rss_gib(pid: int | None) -> float:
    total = 0
    for p in process_tree(pid) if pid else []:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total / 2**30


def answer(urls: tuple[str, ...], model: str, prompt: str, tokens: int) -> ChatResult:
    params = GenerationParams(temperature=0.0, top_p=1.0, max_tokens=tokens, extra={"ignore_eos": True})
    endpoint = Endpoint(urls[0], model, replicas=urls if len(urls) > 1 else ())
    result = None
    for event in stream_chat(endpoint, [{"role": "user", "content": prompt}], params, False, 300):
        result = event
    assert isinstance(result, ChatResult)
    return result


def load(urls: tuple[str, ...], requests: int, concurrency: int, tokens: int) -> dict[str, float]:
    BALANCER.forget()
    jobs = [((BASE, ADAPTER)[i % 2], PROMPTS[i % len(PROMPTS)]) for i in range(requests)]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda job: answer(urls, job[0], job[1], tokens), jobs))
    wall = time.perf_counter() - started
    served = [BALANCER.snapshot().get(u.rstrip("/")).served for u in urls]
    return {"wall_s": wall, "req_s": requests / wall,
            "tok_s": sum(r.completion_tokens or 0 for r in results) / wall,
            "ttft_median_s": statistics.median(r.ttft_s for r in results if r.ttft_s is not None),
            "latency_median_s": statistics.median(r.duration_s for r in results),
            "split": "/".join(str(n) for n in served)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vllm-binding", action="store_true",
                        help="leave core binding to vLLM (both engines on the same core) instead of a core each")
    args = parser.parse_args()

    cache = Path(os.environ.get("QWEN3ARENA_TEST_MODELS", Path(tempfile.gettempdir()) / "qwen3arena-test-models"))
    built = ensure_embedded_models(cache, on_progress=print)
    scratch = Path(tempfile.mkdtemp(prefix="qwen3arena-replicas-"))
    settings = VLLMSettings(port=free_ports(2), replicas=2, startup_timeout_s=600)
    replicas = VLLMReplicas(settings, str(built.base_dir), BASE, scratch / "logs", scratch / "shared")
    first, second = replicas.members
    if args.vllm_binding:
        first.cpu_cores = second.cpu_cores = None
    try:
        started = time.monotonic()
        first.start()
        assert first.wait_ready(600).state == "ready", first.log_tail()
        first_s = time.monotonic() - started
        started = time.monotonic()
        second.start()
        assert second.wait_ready(600).state == "ready", second.log_tail()
        second_s = time.monotonic() - started
        started = time.monotonic()
        replicas.load_adapter(ADAPTER, str(built.adapters[ADAPTER]))
        join_s = time.monotonic() - started
        warm = []
        for url in replicas.base_urls:  # the first adapter request of a replica resolves it: not measured
            started = time.monotonic()
            answer((url,), ADAPTER, PROMPTS[0], 4)
            warm.append(time.monotonic() - started)
            answer((url,), BASE, PROMPTS[0], 4)
        rss = [rss_gib(m.status().pid) for m in replicas.members]

        print(f"\nfirst replica to /health: {first_s:.1f} s (alone on the machine)")
        print(f"second replica to /health: {second_s:.1f} s (the first one up and idle)")
        print(f"adapter join (place in the shared directory + one checking request): {join_s:.2f} s")
        print("first adapter request per replica (resolver load included): "
              + ", ".join(f"{w:.2f} s" for w in warm))
        print("memory per replica (RSS of its process tree): " + ", ".join(f"{r:.2f} GiB" for r in rss))
        print("engine cores: " + ("vLLM's own binding" if args.vllm_binding else
                                  ", ".join(str(m.cpu_cores) for m in replicas.members)))
        print(f"\nload: {args.requests} requests (half base, half adapter), {args.tokens} new tokens each, "
              f"{args.concurrency} at once, {os.cpu_count()} cores\n")
        print("| replicas | round | requests/s | tokens/s | TTFT median (s) | latency median (s) | split |")
        print("|---|---|---|---|---|---|---|")
        for round_ in range(1, args.rounds + 1):
            for urls in (replicas.base_urls[:1], replicas.base_urls):
                r = load(urls, args.requests, args.concurrency, args.tokens)
                print(f"| {len(urls)} | {round_} | {r['req_s']:.2f} | {r['tok_s']:.0f} | {r['ttft_median_s']:.3f} "
                      f"| {r['latency_median_s']:.2f} | {r['split']} |", flush=True)
    finally:
        replicas.stop()


if __name__ == "__main__":
    main()
