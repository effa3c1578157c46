"""Training throughput: the app's path against raw Unsloth and transformers + peft.

Every contender runs in its own process (peak memory is per process), on the same random
Qwen3-shaped checkpoint, LoRA r=16 on all seven projections, AdamW (fused), gradient clipping
at 1.0, bf16 (or 4-bit):

  peft      transformers + peft (SDPA, gradient checkpointing; bitsandbytes nf4 for --four-bit)
  unsloth   a bare Unsloth loop on fixed batches (the ceiling)
  app       python -m qwen3arena.train's code path (Unsloth + trl SFTTrainer) on rows that
            are all exactly --seq tokens long (fixed-length batches)
  app-var   the app's path on realistic variable-length conversations, padded rows (the default)
  app-group the app's path on the same conversations, batching "grouped" (similar lengths,
            up to batch x seq tokens a step)
  app-pack  the app's path on the same conversations, batching "packed" (trl "bfd")

A contender name can carry LoraTrainConfig overrides after "+", e.g.
  app-var+padding_free=false+pad_to_multiple_of=128
and bench switches after "@": "@nocudnn" (SDPA without cuDNN attention), "@profile"
(torch.profiler over four steps near the end: top kernels, top host ops, GPU-busy share),
"@trace" (per step: batch shape, torch.compile counters, Triton kernels compiled), "@why"
(torch.compile's own log of every frame it traces, recompiles and graph breaks, with a
"BENCH STEP n" line before each step, into the --log file), "@dynamic" (torch.compile
treats sizes as symbolic from its first graph instead of recompiling at the second), "@limit=N" (torch.compile's
recompile limit: graphs kept per code object before it falls back to eager).

Each process also measures the machine it got before and after its run ("calib": TFLOP/s of a
fixed bf16 matrix product, microseconds per launch of a tiny kernel); the ratios are printed
both raw and calibrated (tokens/s per calibration TFLOP/s), which takes out a process that got a
slower GPU clock or a busier neighbour than the one it is compared with.

tokens/s is the median over steps 4..N of (real, non-padding tokens in the step) / (step time);
"mean" is total real tokens / total time over the same steps (it keeps any recompilation or
warm-up stalls that a median hides).

Usage: python bench/train_throughput.py --shape tiny|small|1.7b|8b [--four-bit] [--steps 16]
       [--only unsloth,app,...] [--repeat N] [--log FILE] [--deadline SECONDS]

Separate processes on a lent H100 differed by up to +-20% on the same code, so compare paths
with --repeat 2 or more: the contenders run round-robin and every ratio is taken against the
raw Unsloth run of its own round.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = {
    # Qwen3 configs (hidden, intermediate, layers, heads, kv heads, head_dim)
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=64, vocab_size=2048),
    # a CPU shape where the matrix products, not the per-step overhead, take most of a step
    "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, head_dim=64, vocab_size=2048),
    "1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, vocab_size=151936),
    "8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, vocab_size=151936),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_checkpoint(shape: str, out: Path) -> Path:
    """A random-weight Qwen3 of the shape, with the embedded tokenizer (ids stay in range)."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from qwen3arena.embedded import DATA_DIR
    from qwen3arena.embedded.tiny_qwen3 import build_tokenizer

    if (out / "config.json").exists():
        return out
    texts = (DATA_DIR / "corpus" / "kitchen.txt").read_text().splitlines()
    tokenizer = build_tokenizer(texts, out, 2048)
    config = Qwen3Config(**SHAPES[shape], max_position_embeddings=8192, tie_word_embeddings=shape != "8b",
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(out)  # check it loads
    return out


def make_datasets(checkpoint: Path, seq: int, rows: int, out: Path) -> tuple[Path, Path, int]:
    """Fixed-length rows (truncated to exactly seq tokens) and realistic variable-length chats."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    words = (REPO / "data" / "corpus" / "kitchen.txt").read_text().split()
    rng = random.Random(0)
    fixed = out / "fixed.jsonl"
    with open(fixed, "w") as f:
        for _ in range(rows):
            text = " ".join(rng.choice(words) for _ in range(seq * 2))
            f.write(json.dumps({"messages": [{"role": "user", "content": "Summarise."},
                                             {"role": "assistant", "content": text}]}) + "\n")
    variable = out / "variable.jsonl"
    with open(variable, "w") as f:
        for _ in range(rows * 8):  # enough for `rows` packed rows too
            # conversation lengths of real chat data are roughly log-normal
            target = int(min(max(rng.lognormvariate(5.8, 0.8), 40), seq * 0.9))
            answer = " ".join(rng.choice(words) for _ in range(max(target // 2, 5)))
            f.write(json.dumps({"messages": [{"role": "user", "content": "Explain."},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    del tokenizer
    return fixed, variable, rows


# -- contenders (each in its own process) ------------------------------------------------------

def peak_memory_gib() -> float:
    """GPU: peak allocated by torch. CPU: the process's peak resident memory."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_bare(kind: str, checkpoint: str, seq: int, batch: int, steps: int, four_bit: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"

    if kind == "unsloth":
        from qwen3arena.train.isolation import import_unsloth

        FastLanguageModel = import_unsloth().FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(checkpoint, max_seq_length=seq, load_in_4bit=four_bit, dtype=None)
        model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0,
                                                 target_modules=TARGETS, use_gradient_checkpointing="unsloth")
    else:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        kwargs = {"dtype": torch.bfloat16, "attn_implementation": "sdpa"}
        if four_bit:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(checkpoint, device_map={"": 0} if cuda else None, **kwargs)
        if four_bit:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        else:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0, target_modules=TARGETS,
                                                 task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # the same work as the Trainer's step: fused AdamW (transformers' default) and clipping at 1.0
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=cuda)
    vocab = model.config.vocab_size
    times = []
    for _ in range(steps):
        ids = torch.randint(0, min(vocab, 2048), (batch, seq), device=device)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the app logs every step's loss
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return summarize(times, [batch * seq] * steps)


WARMUP_STEPS = int(os.environ.get("BENCH_WARMUP_STEPS", "3"))


def summarize(times: list[float], tokens: list[int]) -> dict:
    """Median and mean real tokens/s over the steps after the warm-up (BENCH_WARMUP_STEPS,
    default 3: compiling and autotuning happen there), the slowest of those steps against their
    median (a stall shows as > 2), plus the per-step trace."""
    times_, tokens_ = times[WARMUP_STEPS:], tokens[WARMUP_STEPS:]
    rates = [n / t for n, t in zip(tokens_, times_)]
    return {"tokens_per_s": statistics.median(rates) if rates else float("nan"),
            "mean_tokens_per_s": sum(tokens_) / sum(times_) if rates else float("nan"),
            "tokens_per_step": statistics.mean(tokens_) if rates else float("nan"),
            "slowest_step": max(times_) / statistics.median(times_) if rates else float("nan"),
            "peak_gib": peak_memory_gib(),
            "step_ms": [round(t * 1000) for t in times], "step_tokens": tokens}


def parse_contender(name: str) -> tuple[str, dict]:
    """"app-var+padding_free=false+pad_to_multiple_of=64" -> ("app-var", {...})."""
    import yaml

    name = name.split("@")[0].split("#")[0]  # "@flag": bench switches (see run_app); "#tag": a label
    base, *pairs = name.split("+")
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = yaml.safe_load(value)
    return base, overrides


def run_app(checkpoint: str, dataset: str, seq: int, batch: int, steps: int, four_bit: bool, name: str,
            work: str) -> dict:
    import shutil

    from qwen3arena.train.config import LoraTrainConfig
    from qwen3arena.train.sft import run

    base, overrides = parse_contender(name)
    flags = set(name.split("@")[1:])
    if "profile" in flags:
        profile_steps(first=max(steps - 6, 3), count=4)
    trace = trace_steps() if "trace" in flags else None
    if "why" in flags:
        log_compiles()
    if "dynamic" in flags:  # "@dynamic": torch.compile traces sizes as symbols from the first graph
        import torch._dynamo

        torch._dynamo.config.assume_static_by_default = False
    for flag in flags:
        if flag.startswith("limit="):  # "@limit=64": graphs torch.compile keeps per code object before eager
            import torch._dynamo

            limit = int(flag.split("=", 1)[1])
            config = torch._dynamo.config
            setattr(config, "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit", limit)
            config.accumulated_recompile_limit = max(getattr(config, "accumulated_recompile_limit", 256), 4 * limit)
    if "nocudnn" in flags:  # SDPA without cuDNN attention; the app's default since (cudnn_attention)
        overrides.setdefault("cudnn_attention", False)
    slug = "".join(c if c.isalnum() else "-" for c in name)
    out = Path(work) / f"{slug}-{int(four_bit)}"
    values = {"name": "bench", "base_model": checkpoint, "dataset": dataset, "output_dir": str(out),
              "max_steps": steps, "per_device_train_batch_size": batch, "max_length": seq,
              "load_in_4bit": four_bit, "answers_only": False,
              "batching": {"app-pack": "packed", "app-group": "grouped"}.get(base, "padded"),
              "learning_rate": 1e-4}
    values.update(overrides)
    config = LoraTrainConfig(**values)
    progress = out / "progress.jsonl"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run(config, progress)
    events = [json.loads(line) for line in progress.read_text().splitlines()]
    steps_ev = [e for e in events if e["event"] == "step"]
    start = next(e["time"] for e in events if e["event"] == "training")
    times, tokens, previous = [], [], start
    for event in steps_ev:
        times.append(event["time"] - previous)
        tokens.append(event.get("step_tokens") or 0)
        previous = event["time"]
    result = summarize(times, tokens)
    peak = max((e.get("gpu_peak_gib") or 0) for e in steps_ev)
    if peak:
        result["peak_gib"] = peak
    if trace is not None:
        result["trace"] = trace
    return result


def trace_steps() -> list[dict]:
    """"@trace": per training step, the batch's shape, what torch.compile counted during it
    (graphs, recompiles, cache misses) and the Triton kernels JIT-compiled during it. A stall
    that coincides with compile work names its cause; one without any points elsewhere (the
    allocator, the host)."""
    from torch._dynamo.utils import counters
    from transformers import Trainer

    trace: list[dict] = []
    compiled: list[str] = []
    try:  # triton >= 3.4; called once per kernel specialization compiled
        from triton import knobs

        previous = knobs.runtime.jit_post_compile_hook

        def hook(*args, **kwargs):
            fn = kwargs.get("fn")
            compiled.append(getattr(fn, "name", None) or str(fn))
            return previous(*args, **kwargs) if previous else None

        knobs.runtime.jit_post_compile_hook = hook
    except Exception as exc:  # noqa: BLE001 - tracing is best effort
        print(f"trace: no triton compile hook ({exc})", file=sys.stderr)

    def snapshot() -> dict[str, int]:
        return {f"{group}.{key}": value for group, counts in counters.items() for key, value in counts.items()
                if isinstance(value, int)}

    original = Trainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        ids = inputs.get("input_ids")
        kernels, before = len(compiled), snapshot()
        out = original(self, model, inputs, *args, **kwargs)
        after = snapshot()
        trace.append({"shape": list(ids.shape) if ids is not None else None,
                      "triton": compiled[kernels:],
                      "dynamo": {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}})
        return out

    Trainer.training_step = training_step
    return trace


def log_compiles() -> None:
    """"@why": torch.compile's log of each frame it starts tracing, each recompile with its
    guard failure and each graph break, on stderr, with a marker before every training step so
    the log says which step paid for what."""
    import logging

    import torch._logging
    from transformers import Trainer

    torch._logging.set_logs(dynamo=logging.INFO, recompiles=True, graph_breaks=True)
    original = Trainer.training_step
    step = {"n": 0}

    def training_step(self, *args, **kwargs):
        step["n"] += 1
        print(f"BENCH STEP {step['n']} shape {list(args[1]['input_ids'].shape) if len(args) > 1 else '?'}",
              file=sys.stderr, flush=True)
        return original(self, *args, **kwargs)

    Trainer.training_step = training_step


def profile_steps(first: int, count: int) -> None:
    """"@profile": torch.profiler over `count` whole training steps from step `first`; prints
    the busiest kernels and host ops, and how much of the wall time the GPU was busy (a
    launch-bound step shows a low share)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import Trainer

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    original = Trainer.training_step
    state = {"step": 0, "prof": None, "wall": 0.0}

    def training_step(self, *args, **kwargs):
        state["step"] += 1
        if state["step"] == first:
            sync()
            state["prof"] = profile(activities=activities)
            state["prof"].start()
            state["wall"] = time.perf_counter()
        elif state["step"] == first + count and state["prof"] is not None:
            sync()
            wall = time.perf_counter() - state["wall"]
            prof, state["prof"] = state["prof"], None
            prof.stop()
            events = prof.key_averages()
            if cuda:
                busy = sum(e.self_device_time_total for e in events) / 1e6
                print(f"PROFILE {count} steps: wall {wall:.3f}s, GPU busy {busy:.3f}s ({busy / wall:.0%})")
                print(events.table(sort_by="self_cuda_time_total", row_limit=25))
            else:
                print(f"PROFILE {count} steps: wall {wall:.3f}s")
            print(events.table(sort_by="cpu_time_total", row_limit=25))
        return original(self, *args, **kwargs)

    Trainer.training_step = training_step


def calibrate() -> dict[str, float]:
    """The machine this process got, measured by fixed work that is the same in every process:
    TFLOP/s of a bf16 matrix product (the GPU's clock and its neighbours) and microseconds per
    launch of a tiny kernel (the host: a 1.7B step is largely kernel launches). Medians of 5."""
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def median_time(work, repeats: int) -> float:
        work()
        sync()
        timings = []
        for _ in range(5):
            sync()
            start = time.perf_counter()
            for _ in range(repeats):
                work()
            sync()
            timings.append(time.perf_counter() - start)
        return statistics.median(timings)

    n, repeats = (8192, 40) if cuda else (512, 20)
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn_like(a)
    tflops = 2 * n**3 * repeats / median_time(lambda: a @ b, repeats) / 1e12
    small = torch.zeros(16, device=device)
    launch_us = median_time(lambda: small.add_(1), 5000) / 5000 * 1e6
    del a, b
    return {"tflops": round(tflops, 2), "launch_us": round(launch_us, 2)}


def kind_of(name: str) -> str:
    """"app-group+pad_to_multiple_of=16@trace#b" -> "app-group"."""
    return name.split("#")[0].split("@")[0].split("+")[0]


def child(args: argparse.Namespace) -> None:
    before = calibrate()
    if kind_of(args.child) in ("peft", "unsloth"):
        result = run_bare(kind_of(args.child), args.checkpoint, args.seq, args.batch, args.steps, args.four_bit)
    else:
        result = run_app(args.checkpoint, args.dataset, args.seq, args.batch, args.steps, args.four_bit,
                         args.child, args.work)
    result["calib"] = [before, calibrate()]
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.7b")
    parser.add_argument("--four-bit", action="store_true")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--only", default="peft,unsloth,app,app-var,app-group,app-pack",
                        help="comma-separated contenders; NAME:STEPS sets a contender's own step count")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the whole contender list this many rounds, interleaved")
    parser.add_argument("--work", default=None)
    parser.add_argument("--log", default=None, help="append every contender's full output to this file")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds: start no contender after this much time has passed")
    parser.add_argument("--warmup", type=int, default=None,
                        help="steps left out of the steady-state figures (default 3; BENCH_WARMUP_STEPS)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.warmup is not None:  # children read it from the environment
        global WARMUP_STEPS
        WARMUP_STEPS = args.warmup
        os.environ["BENCH_WARMUP_STEPS"] = str(args.warmup)
    began = time.time()
    work = Path(args.work or tempfile.mkdtemp(prefix="train-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(args.shape, work / f"model-{args.shape}")
    contenders = [(n.rsplit(":", 1)[0], int(n.rsplit(":", 1)[1]) if ":" in n else args.steps)
                  for n in args.only.split(",")]
    most = max(steps for _, steps in contenders)
    fixed, variable, _ = make_datasets(checkpoint, args.seq, args.batch * (most + 2), work)
    runs: dict[str, list[dict]] = {}  # contender -> one result per round
    for round_ in range(args.repeat):
        # ABBA: odd rounds run the list backwards, so a machine that drifts during the call
        # (clocks, heat, a neighbour) favours no contender
        for name, steps in contenders if round_ % 2 == 0 else contenders[::-1]:
            if args.deadline and time.time() - began > args.deadline:
                print(f"{name}: skipped (deadline)", file=sys.stderr, flush=True)
                continue
            result = run_contender(args, name, steps, checkpoint, fixed, variable, work)
            if result is not None:
                result["round"] = round_
                runs.setdefault(name, []).append(result)
    print_table(args, runs)


def run_contender(args: argparse.Namespace, name: str, steps: int, checkpoint: Path, fixed: Path,
                  variable: Path, work: Path) -> dict | None:
    dataset = {"app-var": variable, "app-group": variable, "app-pack": variable}.get(kind_of(name), fixed)
    command = [sys.executable, __file__, "--child", name, "--checkpoint", str(checkpoint),
               "--dataset", str(dataset), "--seq", str(args.seq), "--batch", str(args.batch),
               "--steps", str(steps), "--work", str(work)] + (["--four-bit"] if args.four_bit else [])
    started = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    took = time.time() - started
    if args.log:
        with open(args.log, "a") as f:
            f.write(f"\n===== {args.shape} {'4-bit' if args.four_bit else 'bf16'} {name} "
                    f"rc={proc.returncode} {took:.0f}s =====\n{proc.stdout}\n{proc.stderr}\n")
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        print(f"{name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}", file=sys.stderr)
        return None
    result = json.loads(line[7:])
    print(f"{name} ({took:.0f}s): {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def print_table(args: argparse.Namespace, runs: dict[str, list[dict]]) -> None:
    """One row per contender. Each ratio is taken against a baseline's run of the same round
    (separate processes on a lent H200 differed by up to 30%), and the table shows the median
    over rounds with the range: against the raw Unsloth loop ("unsloth") and, for the app's
    variable-length paths, against the app on fixed-length rows ("app"). A second raw run
    ("unsloth#aa") gives the A/A ratio: the spread a ratio of identical code shows in this call."""
    def per_round(name: str) -> dict[int, float]:
        return {r["round"]: r["tokens_per_s"] for r in runs.get(name, [])}

    def ratio_text(results: list[dict], baseline: dict[int, float]) -> str:
        ratios = [r["tokens_per_s"] / baseline[r["round"]] for r in results if r["round"] in baseline]
        if not ratios:
            return "n/a"
        return f"{statistics.median(ratios):.3f}x" + (f" ({min(ratios):.3f}-{max(ratios):.3f})"
                                                      if len(ratios) > 1 else "")

    def calibrated(name: str) -> dict[int, float]:
        """tokens/s per calibration TFLOP/s (the mean of the process's two calibrations)."""
        return {r["round"]: r["tokens_per_s"] / statistics.mean(c["tflops"] for c in r["calib"])
                for r in runs.get(name, []) if r.get("calib")}

    def calibrated_text(name: str, baseline: dict[int, float]) -> str:
        mine = calibrated(name)
        ratios = [mine[r] / baseline[r] for r in mine if r in baseline]
        if not ratios:
            return "n/a"
        return f"{statistics.median(ratios):.3f}x" + (f" ({min(ratios):.3f}-{max(ratios):.3f})"
                                                      if len(ratios) > 1 else "")

    raw, fixed = per_round("unsloth"), per_round("app")
    raw_calibrated = calibrated("unsloth")
    precision = "4-bit" if args.four_bit else "bf16"
    print(f"\nsteady state: steps {WARMUP_STEPS + 1}..N of each run; ratios per round, median (range)")
    print("\n| shape | path | rounds | tokens/s (median) | range over rounds | vs raw Unsloth (same round) "
          "| calibrated vs raw | vs app fixed (same round) | mean tokens/s | tokens/step | slowest step / median "
          "| peak memory (GiB; GPU allocated, or CPU RSS) | calib TFLOP/s, launch µs (before; after) |"
          "\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        rates = [r["tokens_per_s"] for r in results]
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else "one run"
        versus_fixed = ratio_text(results, fixed) if kind_of(name) in ("app-var", "app-group", "app-pack") else ""
        print(f"| {args.shape} {precision} | {name} | {len(results)} | {statistics.median(rates):,.0f} | {spread} "
              f"| {ratio_text(results, raw)} | {calibrated_text(name, raw_calibrated)} | {versus_fixed} "
              f"| {statistics.median(r['mean_tokens_per_s'] for r in results):,.0f} "
              f"| {statistics.median(r['tokens_per_step'] for r in results):,.0f} "
              f"| {max(r['slowest_step'] for r in results):.2f} "
              f"| {max(r['peak_gib'] for r in results):.1f} "
              f"| {' / '.join(calibration_text(r) for r in results)} |")
    print_stalls(runs)


def calibration_text(result: dict) -> str:
    return "; ".join(f"{c['tflops']:.0f}, {c['launch_us']:.1f}" for c in result.get("calib", []))


def print_stalls(runs: dict[str, list[dict]]) -> None:
    """For traced runs ("@trace"): every step after the warm-up that took over 1.5x the median,
    with its batch shape and the compile work done during it."""
    for name, results in runs.items():
        for result in results:
            trace, times = result.get("trace"), result["step_ms"]
            if not trace:
                continue
            median = statistics.median(times[WARMUP_STEPS:])
            shapes = {tuple(t["shape"]) for t in trace if t["shape"]}
            compiles = sum(len(t["triton"]) for t in trace[WARMUP_STEPS:])
            print(f"\n{name} round {result['round']}: {len(shapes)} batch shapes, "
                  f"{compiles} Triton compiles after step {WARMUP_STEPS}, median step {median:.0f} ms")
            for step, (ms, item) in enumerate(zip(times, trace), start=1):
                if step > WARMUP_STEPS and (ms > 1.5 * median or item["triton"]):
                    dynamo = {k: v for k, v in item["dynamo"].items() if "calls_captured" not in k}
                    print(f"  step {step}: {ms} ms, shape {item['shape']}, triton {item['triton'][:8]}"
                          f"{'...' if len(item['triton']) > 8 else ''}, torch.compile {dynamo}")


if __name__ == "__main__":
    main()
