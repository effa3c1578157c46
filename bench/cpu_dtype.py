"""vLLM on the CPU: bf16 against float32 serving, on this CPU and with AVX2 kernels only.

The question (issue 12): is `vllm.dtype: bfloat16` (the default) slow or wrong on a CPU without
native bf16 (AVX2 machines: AMD Zen 2/3, most laptops)? Each configuration starts the app's own
vLLM server (base + the two embedded LoRA adapters, as the app serves them) and measures arena
answers: 64 new tokens, greedy, one request per model, then 8 per model at once.

"avx2" emulates such a CPU on a bigger one: vLLM is made to load its `_C_AVX2` kernels (checked in
the server's memory map), torch dispatches AVX2 code (ATEN_CPU_CAPABILITY=avx2) and oneDNN is
capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), so neither uses AVX-512 BF16 instructions. It is not a
real Zen 3: cache sizes and clocks stay this machine's.

Every configuration runs once per round, rounds interleaved, so the spread between rounds of the
same configuration (A/A) is printed next to each A/B ratio.

Usage: .venv/bin/python bench/cpu_dtype.py [--rounds 2] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena_latency import CONTESTANTS, free_port, measure_vllm  # noqa: E402

from qwen3arena.config import load_settings  # noqa: E402
from qwen3arena.embedded import ensure_embedded_models  # noqa: E402
from qwen3arena.hardware import cpu_info, vllm_kernels  # noqa: E402
from qwen3arena.serve import VLLMServer  # noqa: E402

AVX2_SITECUSTOMIZE = '''
import os
if os.environ.get("QWEN3ARENA_BENCH_AVX2") == "1":
    import torch.cpu
    torch.cpu._is_avx512_supported = lambda: False
    torch.cpu._is_avx512_bf16_supported = lambda: False
'''
AVX2_ENV = {"QWEN3ARENA_BENCH_AVX2": "1", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def serve_and_measure(built, dtype: str, isa: str, tokens: int, scratch: Path) -> dict:
    settings = load_settings(env={"QWEN3ARENA_HOME": str(scratch / "home")}).vllm
    settings.port, settings.dtype = free_port(), dtype
    saved = dict(os.environ)
    if isa == "avx2":
        shim = scratch / "avx2"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(AVX2_SITECUSTOMIZE)
        os.environ.update(AVX2_ENV)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), saved.get("PYTHONPATH")]))
    try:
        server = VLLMServer(settings, str(built.base_dir), CONTESTANTS[0], scratch / f"logs-{isa}-{dtype}")
        server.start()
        for name, path in built.adapters.items():
            server.load_adapter(name, str(path))
        status = server.wait_ready(900)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if status.state != "ready":
        raise SystemExit(f"{isa}/{dtype}: vLLM {status.state}: {status.message}\n{status.log_tail}")
    kernels = vllm_kernels(status.pid)
    try:
        figures = measure_vllm({m: server.base_url for m in CONTESTANTS}, tokens)
    finally:
        server.stop()
    return {**figures, "kernels": kernels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    built = ensure_embedded_models(Path(os.environ.get("QWEN3ARENA_TEST_MODELS",
                                                       Path(tempfile.gettempdir()) / "qwen3arena-test-models")))
    print(f"CPU: {cpu_info().summary()}", flush=True)
    configs = [(isa, dtype) for isa in ("native", "avx2") for dtype in ("bfloat16", "float32")]
    results: dict[tuple[str, str], list[dict]] = {c: [] for c in configs}
    scratch = Path(tempfile.mkdtemp(prefix="cpu-dtype-"))
    for round_ in range(1, args.rounds + 1):
        for isa, dtype in configs:
            got = serve_and_measure(built, dtype, isa, args.tokens, scratch)
            results[(isa, dtype)].append(got)
            print(f"round {round_} {isa:6} {dtype:8} kernels {','.join(got['kernels'])}: "
                  f"1 request {got['single_tps']:.1f} tok/s, TTFT {got['single_ttft']:.3f} s; "
                  f"8 per model {got['mixed_agg']:.1f} tok/s all", flush=True)

    def spread(values: list[float]) -> str:
        return f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"

    print("\n| kernels | dtype | 1 request tok/s (rounds) | A/A spread | 8 per model tok/s all (rounds) | A/A spread |")
    print("|---|---|---|---|---|---|")
    for isa, dtype in configs:
        rows = results[(isa, dtype)]
        single, mixed = [r["single_tps"] for r in rows], [r["mixed_agg"] for r in rows]
        print(f"| {isa} ({','.join(rows[0]['kernels'])}) | {dtype} | {spread(single)} | "
              f"{(max(single) / min(single) - 1) * 100:.0f}% | {spread(mixed)} | {(max(mixed) / min(mixed) - 1) * 100:.0f}% |")
    print("\n| kernels | float32 / bfloat16, 1 request | float32 / bfloat16, 8 per model |")
    print("|---|---|---|")
    for isa in ("native", "avx2"):
        bf, fp = results[(isa, "bfloat16")], results[(isa, "float32")]
        ratio = lambda key: statistics.median(r[key] for r in fp) / statistics.median(r[key] for r in bf)  # noqa: E731
        print(f"| {isa} | {ratio('single_tps'):.2f}x | {ratio('mixed_agg'):.2f}x |")


if __name__ == "__main__":
    main()
