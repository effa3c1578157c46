"""Arena latency and the embedded default's serving choice, measured side by side in one run.

Part 1 - overhead of the app: time to first token (TTFT) and tokens/s of arena answers
  (natural answer lengths: the same greedy answers on every path, so the paths compare)
  (a) sent straight to the vLLM server with the openai client,
  (b) through the Arena service (what the UI calls),
  (c) through the web app as a browser reads it, from separate client processes (as browsers
      are): each page is opened first (config, load events), then the message is sent through
      Gradio's queue protocol (join, then the server-sent event stream read as it arrives) ->
      Gradio queue -> Arena -> vLLM,
  at 1 and 8 concurrent battles (2 and 16 concurrent streams), same prompts, greedy. Every path
  does the same work from its clock's start: the service and the web paths both open the battle
  (Arena.send: sampling, the battle row), the direct path asks vLLM only.
  gradio_client is not used for (c): it looks for new messages every 50 ms, which added 0-50 ms
  of its own to every figure taken with it (docs/benchmarks.md).
Part 2 - serving choice for the embedded contestants (base + 2 LoRA adapters):
  (a) one vLLM server with LoRA adapters (what the app does),
  (b) merged checkpoints, one vLLM server each, no LoRA,
  (c) transformers generate in-process (peft for the adapters),
  fixed 64 new tokens (ignore_eos), 1 request and 8 concurrent requests per model.

Usage: .venv/bin/python bench/arena_latency.py [--quick]
Prints markdown tables; run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import openai  # noqa: E402

from qwen3arena.config import load_settings  # noqa: E402
from qwen3arena.embedded import ensure_embedded_models  # noqa: E402

PROMPTS = [
    "How long does cooked rice keep in the fridge?", "Can I freeze milk?",
    "How should I store onions?", "How do I cook shrimp?", "Can I freeze bread?",
    "How do I cook bacon?", "How should I store berries?", "How long does butter keep in the fridge?",
]
CONTESTANTS = ["tiny-qwen3-base", "tiny-qwen3-concise", "tiny-qwen3-chatty"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


@functools.lru_cache(maxsize=None)
def client_for(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=300)


def direct_stream(base_url: str, model: str, prompt: str, max_tokens: int,
                  ignore_eos: bool = True) -> dict:
    client = client_for(base_url)
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True,
        stream_options={"include_usage": True}, temperature=0, max_tokens=max_tokens,
        extra_body={"chat_template_kwargs": {"enable_thinking": False},
                    **({"ignore_eos": True} if ignore_eos else {})},
    )
    for chunk in stream:
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta and (delta.content or getattr(delta, "reasoning", None)) and first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"ttft": first, "tokens": tokens, "total": total,
            "tps": tokens / (total - first) if first and total > first else None}


class WebClient:
    """Gradio's queue protocol as the browser speaks it: POST queue/join, then read the event
    stream of the page's session as bytes arrive (no polling), applying each frame's diff."""

    def __init__(self, url: str) -> None:
        import uuid

        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=None)
        config = self.http.get(self.url + "/config").json()
        self.endpoints = {d.get("api_name"): (d.get("id"), d["targets"][0][0] if d.get("targets") else None)
                          for d in config["dependencies"]}
        self.session = uuid.uuid4().hex[:12]
        self.loads = [d.get("id") for d in config["dependencies"]
                      if any(t[1] == "load" for t in d.get("targets") or [])]

    def open_page(self) -> None:
        """What a browser does before anyone types: the page's load events (its session starts)."""
        for fn in self.loads:
            for _ in self.stream(fn, []):
                pass

    def stream(self, api_name: str | int, data: list) -> Iterator[tuple[float, list]]:
        """(seconds since the join was sent, every output as the page now holds it), per frame."""
        import json

        from gradio_client.utils import apply_diff

        fn, trigger = self.endpoints[api_name] if isinstance(api_name, str) else (api_name, None)
        start = time.perf_counter()
        joined = self.http.post(self.url + "/gradio_api/queue/join", json={
            "data": data, "event_data": None, "fn_index": fn, "trigger_id": trigger, "session_hash": self.session})
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        outputs: list | None = None
        with self.http.stream("GET", self.url + "/gradio_api/queue/data", params={"session_hash": self.session}) as rsp:
            buffer = b""
            for chunk in rsp.iter_raw():
                buffer += chunk
                while b"\n\n" in buffer:
                    line, buffer = buffer.split(b"\n\n", 1)
                    if not line.startswith(b"data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("event_id") != event_id:
                        continue
                    if message["msg"] == "process_generating":
                        frame = message["output"]["data"]
                        outputs = frame if outputs is None else [apply_diff(o, d) for o, d in zip(outputs, frame)]
                        yield time.perf_counter() - start, outputs
                    elif message["msg"] == "process_completed":
                        if not message.get("success", True):
                            raise RuntimeError(f"the web app failed the request: {message.get('output')}")
                        return


def first_answer_times(frames: Iterator[tuple[float, list]]) -> list[float | None]:
    """When each pane (outputs 0 and 1) first shows answer text."""
    first: list[float | None] = [None, None]
    for elapsed, outputs in frames:
        for side in (0, 1):
            chat = outputs[side]
            if first[side] is None and chat and chat[-1]["role"] == "assistant" and chat[-1]["content"]:
                first[side] = elapsed
    return first


def web_battle(url: str, prompt: str, barrier=None) -> list[float | None]:
    """One visitor (run in its own process): open the page, wait until every visitor of the
    round has opened theirs (a page load is not part of a turn: the visitor read the page before
    typing), send the message; when each pane first showed answer text, in seconds from the send."""
    client = WebClient(url)
    client.open_page()
    if barrier is not None:
        barrier.wait()
    return first_answer_times(client.stream("send", [prompt]))


def summarize(rows: list[dict], wall: float) -> tuple[float, float, float]:
    tokens = sum(r["tokens"] for r in rows)
    return median([r["ttft"] for r in rows]), median([r["tps"] for r in rows]), tokens / wall


# -- part 1 --------------------------------------------------------------------------------

def part1(runtime, app_url: str, concurrencies: list[int], max_tokens: int, rounds: int = 3) -> list[str]:
    import multiprocessing

    # the visitors: processes of their own, as browsers are (their parsing is not the app's work)
    visitors = concurrent.futures.ProcessPoolExecutor(max(concurrencies), multiprocessing.get_context("spawn"))
    list(visitors.map(time.sleep, [1.0] * max(concurrencies)))  # every visitor process started
    manager = multiprocessing.get_context("spawn").Manager()  # a round's visitors send together
    gaps: dict[int, dict[str, list[float]]] = {}
    url = runtime.server.base_url
    lines = ["| path | battles at once | TTFT median (s) | tokens/s per answer (median) | tokens/s all answers |",
             "|---|---|---|---|---|"]
    for concurrency in concurrencies:
        # the same work for every path: `concurrency` battles of two answers each, on the prompts;
        # the direct path asks the pairs the arena draws most (its three pairs in turn)
        def battle_of(i: int) -> tuple[str, str, str]:
            return CONTESTANTS[i % 3], CONTESTANTS[(i + 1) % 3], PROMPTS[i % len(PROMPTS)]

        pairs = [battle_of(i) for i in range(concurrency)]

        def run_direct(pair):
            a, b, prompt = pair
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                return list(pool.map(lambda m: direct_stream(url, m, prompt, max_tokens, ignore_eos=False), (a, b)))

        def run_service(pair):
            _, _, prompt = pair
            session = f"bench-{uuid.uuid4().hex[:8]}"
            start = time.perf_counter()
            first = [None, None]
            view = None
            for view in runtime.arena.send(session, "anon:bench", prompt):  # what the web handler calls
                for side in (0, 1):
                    if view.answers[side] and first[side] is None:
                        first[side] = time.perf_counter() - start
            total = time.perf_counter() - start
            record = runtime.store.get_battle(view.battle_id)
            runtime.arena.close_session(session)
            rows = []
            for side, metrics in ((0, record.metrics_a[-1]), (1, record.metrics_b[-1])):
                tokens = metrics["completion_tokens"] or 0
                rows.append({"ttft": first[side], "tokens": tokens, "total": total,
                             "tps": tokens / (metrics["duration_s"] - metrics["ttft_s"])
                             if metrics["ttft_s"] else None})
            return rows

        barrier = manager.Barrier(concurrency)
        warming = [True]

        def run_web(pair):
            _, _, prompt = pair
            first = visitors.submit(web_battle, app_url, prompt, None if warming[0] else barrier).result()
            return [{"ttft": first[side], "tokens": 0, "total": None, "tps": None} for side in (0, 1)]

        paths = (("direct to vLLM (openai client)", run_direct),
                 ("Arena service", run_service),
                 ("web app (as a browser)", run_web))
        for _, fn in paths:
            fn(pairs[0])  # warm-up
        warming[0] = False
        measured: dict[str, list[tuple[float, float, float, float]]] = {}
        for round_ in range(rounds):
            # ABBA: a machine that drifts during the run favours no path
            for name, fn in paths if round_ % 2 == 0 else paths[::-1]:
                # waves of `concurrency` battles at once, enough for 16 battles a path and round:
                # one battle's first token varies 10x here (which models were drawn, vLLM's batch)
                rows, wall = [], 0.0
                for wave in range(max(1, 16 // concurrency)):
                    wave_pairs = [battle_of(i + wave) for i in range(concurrency)]
                    start = time.perf_counter()
                    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                        rows += [r for battle in pool.map(fn, wave_pairs) for r in battle]
                    wall += time.perf_counter() - start
                measured.setdefault(name, []).append((*summarize(rows, wall), wall))
        for name, _ in paths:
            ttfts = [m[0] for m in measured[name]]
            spread = f"{median(ttfts):.3f} ({min(ttfts):.3f}-{max(ttfts):.3f})"
            if name.startswith("web app"):
                lines.append(f"| {name} | {concurrency} | {spread} | (not visible to the client) | |")
            else:
                lines.append(f"| {name} | {concurrency} | {spread} | {median([m[1] for m in measured[name]]):.1f} "
                             f"| {median([m[2] for m in measured[name]]):.1f} |")
            print(lines[-1], flush=True)
        gaps[concurrency] = {
            "web - service (ms)": [1000 * (w[0] - s[0]) for w, s in zip(measured[paths[2][0]], measured[paths[1][0]])],
            "web / direct": [w[0] / d[0] for w, d in zip(measured[paths[2][0]], measured[paths[0][0]])],
            "service - direct (ms)": [1000 * (s[0] - d[0]) for s, d in zip(measured[paths[1][0]], measured[paths[0][0]])],
        }
    lines.append("\nTTFT of the web app (as a browser) against the other paths, per round (median, range over "
                 f"{rounds} rounds):\n\n| battles at once | web - service (ms) | web / direct vLLM | service - direct (ms) |"
                 "\n|---|---|---|---|")
    for concurrency, gap in gaps.items():
        cells = [f"{median(v):.1f} ({min(v):.1f} to {max(v):.1f})" if "ms" in k else
                 f"{median(v):.2f}x ({min(v):.2f}-{max(v):.2f})" for k, v in gap.items()]
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    print("\n".join(lines[-(len(gaps) + 1):]), flush=True)
    visitors.shutdown()
    manager.shutdown()
    return lines


# -- part 2 --------------------------------------------------------------------------------

def process_tree_rss_gib(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**30


def measure_vllm(targets: dict[str, str], tokens: int) -> dict[str, float]:
    """targets: model -> base_url. Returns single-request and 8-concurrent figures."""
    for m in targets:  # warm-up
        direct_stream(targets[m], m, PROMPTS[0], tokens, ignore_eos=True)
    singles = [direct_stream(targets[m], m, PROMPTS[1], tokens, ignore_eos=True) for m in targets]
    jobs = [(m, PROMPTS[i % len(PROMPTS)]) for m in targets for i in range(8)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        rows = list(pool.map(lambda j: direct_stream(targets[j[0]], j[0], j[1], tokens, ignore_eos=True), jobs))
    wall = time.perf_counter() - start
    return {"single_tps": median([r["tps"] for r in singles]), "single_ttft": median([r["ttft"] for r in singles]),
            "mixed_ttft": median([r["ttft"] for r in rows]), "mixed_agg": sum(r["tokens"] for r in rows) / wall}


def measure_transformers(base_dir: Path, adapters: dict[str, Path], tokens: int) -> dict[str, float]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)  # vLLM's CPU worker uses one core too
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.padding_side = "left"
    models = {"tiny-qwen3-base": AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)}
    for name, path in adapters.items():
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)
        models[name] = PeftModel.from_pretrained(base, str(path))

    def generate(model, prompts):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True, enable_thinking=False) for p in prompts]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return (out.shape[1] - batch["input_ids"].shape[1]) * len(prompts), time.perf_counter() - start

    singles = []
    for model in models.values():
        generate(model, PROMPTS[:1])
        n, t = generate(model, PROMPTS[1:2])
        singles.append(n / t)
    start = time.perf_counter()
    total = 0
    for model in models.values():  # one batch of 8 per model, models one after another
        n, _ = generate(model, PROMPTS[:8])
        total += n
    wall = time.perf_counter() - start
    return {"single_tps": median(singles), "single_ttft": float("nan"), "mixed_ttft": float("nan"),
            "mixed_agg": total / wall}


def part2(runtime, built, tokens: int) -> list[str]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qwen3arena.config import VLLMSettings
    from qwen3arena.serve import VLLMServer

    lines = ["| serving | single request tokens/s (median) | single TTFT (s) | 8 per model at once: TTFT median (s) | 8 per model at once: tokens/s all | memory (GiB RSS) | processes |",
             "|---|---|---|---|---|---|---|"]
    lora = measure_vllm({m: runtime.server.base_url for m in CONTESTANTS}, tokens)
    rss = process_tree_rss_gib(runtime.server.status().pid)
    lines.append(f"| vLLM, base + LoRA adapters (app) | {lora['single_tps']:.1f} | {lora['single_ttft']:.3f} | "
                 f"{lora['mixed_ttft']:.3f} | {lora['mixed_agg']:.1f} | {rss:.2f} | 1 |")
    print(lines[-1], flush=True)
    runtime.server.stop()  # free the cores for the next contender

    merged_root = Path(tempfile.mkdtemp(prefix="merged-"))
    dirs = {"tiny-qwen3-base": built.base_dir}
    tokenizer = AutoTokenizer.from_pretrained(built.base_dir)
    for name, path in built.adapters.items():
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(built.base_dir), str(path))
        out = merged_root / name
        model.merge_and_unload().save_pretrained(out)
        tokenizer.save_pretrained(out)
        dirs[name] = out
    servers = []
    for name, path in dirs.items():
        settings = VLLMSettings(port=free_port(), reasoning_parser=None, max_loras=1)
        server = VLLMServer(settings, str(path), name, merged_root / f"logs-{name}")
        server.command = _without_lora(server.command)  # merged models need no LoRA
        server.start()
        servers.append(server)
    for server in servers:
        status = server.wait_ready(900)
        if status.state != "ready":
            raise SystemExit(f"merged server failed: {status.message}\n{status.log_tail}")
    merged = measure_vllm({s.served_name: s.base_url for s in servers}, tokens)
    rss = sum(process_tree_rss_gib(s.status().pid) for s in servers)
    lines.append(f"| vLLM, merged checkpoints, one server each | {merged['single_tps']:.1f} | {merged['single_ttft']:.3f} | "
                 f"{merged['mixed_ttft']:.3f} | {merged['mixed_agg']:.1f} | {rss:.2f} | 3 |")
    print(lines[-1], flush=True)
    for server in servers:
        server.stop()

    tf = measure_transformers(built.base_dir, built.adapters, tokens)
    import psutil

    rss = psutil.Process().memory_info().rss / 2**30
    lines.append(f"| transformers generate (+peft), in-process | {tf['single_tps']:.1f} | n/a | "
                 f"n/a (batched per model) | {tf['mixed_agg']:.1f} | {rss:.2f} (whole bench process) | 1 |")
    print(lines[-1], flush=True)
    return lines


def _without_lora(command_fn):
    def command() -> list[str]:
        args = command_fn()
        out, skip = [], 0
        for arg in args:
            if skip:
                skip -= 1
                continue
            if arg == "--enable-lora":
                continue
            if arg in ("--max-loras", "--max-lora-rank"):
                skip = 1
                continue
            out.append(arg)
        return out
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="part 1 only")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="part 1: rounds of every path, interleaved")
    args = parser.parse_args()

    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui import build_app

    models_dir = Path(os.environ.get("QWEN3ARENA_TEST_MODELS", Path(tempfile.gettempdir()) / "qwen3arena-test-models"))
    built = ensure_embedded_models(models_dir, on_progress=print)
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    settings = load_settings(env={"QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__PORT": str(free_port()),
                                  "QWEN3ARENA__GENERATION__TEMPERATURE": "0",
                                  "QWEN3ARENA__GENERATION__MAX_TOKENS": str(args.max_tokens),
                                  # past its end-of-answer the tiny model babbles think tags, which
                                  # the qwen3 reasoning parser would hold back as reasoning
                                  "QWEN3ARENA__VLLM__REASONING_PARSER": "null"})
    runtime = create_runtime(settings)
    runtime.start(wait=True)
    assert runtime.server.status().state == "ready", runtime.server.log_tail()
    demo = build_app(runtime)
    demo.queue(default_concurrency_limit=16)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    print(f"## Part 1: the app's overhead (greedy, natural answer lengths, at most {args.max_tokens} tokens)\n")
    part1(runtime, f"http://127.0.0.1:{port}", [1, 8], args.max_tokens, args.rounds)
    demo.close()
    if not args.quick:
        print(f"\n## Part 2: serving the embedded contestants ({args.max_tokens} new tokens each, ignore_eos)\n")
        part2(runtime, built, args.max_tokens)
    runtime.shutdown()


if __name__ == "__main__":
    main()
