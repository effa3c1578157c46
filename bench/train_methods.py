"""DPO against SFT on the same preference pairs, bf16 and 4-bit, and a run that cannot fit,
all through the app's own runner (TrainingRunner: the queue, the training subprocess, its
progress file), as the Train tab and `python -m qwen3arena train-round` start them.

The queue, in order:
  oom         SFT at a batch that cannot fit (batch x max_length far past the GPU): must end
              "failed" with "CUDA out of memory" and what to change, and the queue goes on
  parent      SFT on the pairs' chosen answers: the adapter the DPO and SFT runs start from
  dpo-bf16    DPO from the parent (trl keeps the parent's adapter frozen as the reference)
  dpo-4bit    the same, base weights in 4-bit (QLoRA)
  sft-bf16    SFT from the parent on the same pairs (prompt + chosen)
  sft-4bit    the same in 4-bit

tokens/s: the median over steps 4..N of real (non-padding) tokens a step / step time, from the
run's progress events; a DPO step reads the chosen and the rejected answer, an SFT step only the
chosen, so pairs/s is shown too. Peak memory: torch's peak allocated in the training process.

Usage: python bench/train_methods.py --shape 1.7b [--steps 30] [--batch 8] [--seq 1024] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from train_throughput import SHAPES, make_checkpoint  # noqa: E402


def make_pairs(out: Path, pairs: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """Preference pairs of realistic lengths, the same pairs as SFT rows (prompt + chosen), and
    rows far longer than any batch that fits (for the out-of-memory run)."""
    words = (REPO / "data" / "corpus" / "kitchen.txt").read_text().split()
    rng = random.Random(seed)

    def text(mean_words: float) -> str:
        return " ".join(rng.choice(words) for _ in range(int(max(rng.lognormvariate(0, 0.5) * mean_words, 5))))

    dpo, sft, long = out / "pairs.jsonl", out / "pairs_sft.jsonl", out / "long.jsonl"
    with open(dpo, "w") as d, open(sft, "w") as s:
        for _ in range(pairs):
            prompt, chosen, rejected = text(20), text(150), text(150)
            d.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")
            s.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": chosen}]}) + "\n")
    with open(long, "w") as f:
        for _ in range(64):
            f.write(json.dumps({"messages": [{"role": "user", "content": "Tell me everything."},
                                             {"role": "assistant", "content": text(12000)}]}) + "\n")
    return dpo, sft, long


def summarize(events: list[dict]) -> dict:
    steps = [e for e in events if e.get("event") == "step"]
    start = next((e["time"] for e in events if e.get("event") == "training"), None)
    total = next((e.get("total") for e in events if e.get("event") == "training"), None)
    if not steps or start is None:
        return {"total": total}
    times, previous = [], start
    for event in steps:
        times.append(event["time"] - previous)
        previous = event["time"]
    rates = [e.get("step_tokens", 0) / t for e, t in zip(steps[3:], times[3:]) if t > 0]
    last = steps[-1]
    return {"total": total, "steps": last["step"],
            "tokens_per_s": statistics.median(rates) if rates else None,
            "step_s": statistics.median(times[3:]) if len(times) > 3 else None,
            "peak_gib": max((e.get("gpu_peak_gib") or 0) for e in steps),
            "first_loss": steps[0]["loss"], "last_loss": last["loss"],
            "margin": last.get("rewards_margins"), "accuracy": last.get("rewards_accuracies")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="1.7b")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8, help="pairs (DPO) or rows (SFT) a step")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--only", default="oom,parent,dpo-bf16,dpo-4bit,sft-bf16,sft-4bit")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()

    import torch

    from qwen3arena.store import Store
    from qwen3arena.train import LoraTrainConfig, TrainingRunner

    work = Path(args.work or tempfile.mkdtemp(prefix="train-methods-"))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(args.shape, work / f"model-{args.shape}")
    dpo_data, sft_data, long_data = make_pairs(work, args.batch * (args.steps + 2))
    cuda = torch.cuda.is_available()
    store = Store(work / "bench.duckdb")
    runner = TrainingRunner(store, work / "runs")
    parent_dir: str | None = None
    only = args.only.split(",")
    rows = []
    for name in only:
        base = dict(name=f"{name}-{int(time.time())}", base_model=str(checkpoint), output_dir="",
                    max_steps=args.steps, per_device_train_batch_size=args.batch, max_length=args.seq,
                    learning_rate=1e-4, answers_only=False)
        if name == "oom":
            # every row is cut to max_length: batch x max_length tokens a step, far past the GPU
            base.update(dataset=str(long_data), per_device_train_batch_size=512, max_length=16384, max_steps=2)
        elif name == "parent":
            base.update(dataset=str(sft_data))
        else:
            method, precision = name.split("-")
            base.update(dataset=str(dpo_data if method == "dpo" else sft_data), method=method,
                        load_in_4bit=precision == "4bit" and cuda, init_adapter=parent_dir,
                        learning_rate=5e-5 if method == "dpo" else 1e-4)
        started = time.time()
        record = runner.submit(LoraTrainConfig(**base))
        finished = runner.wait(record.run_id, timeout=900)
        events = [json.loads(line) for line in (Path(finished.output_dir) / "progress.jsonl").read_text().splitlines()]
        result = {"run": name, "status": finished.status, "error": finished.error, "wall_s": time.time() - started,
                  **summarize(events)}
        if name == "parent" and finished.status == "succeeded":
            parent_dir = finished.output_dir
        rows.append(result)
        print(json.dumps(result), flush=True)
    runner.shutdown()
    print(f"\n{args.shape}, {args.batch} pairs or rows a step, max_length {args.seq}, {args.steps} steps; "
          f"tokens/s: median of steps 4..N\n")
    print("| run | status | steps (announced total) | tokens/s | pairs or rows/s | median step (s) "
          "| peak GiB | loss first → last | DPO margin / accuracy (last step) |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "-"
        per = f"{args.batch / r['step_s']:.1f}" if r.get("step_s") else "-"
        loss = f"{r['first_loss']:.3f} → {r['last_loss']:.3f}" if "first_loss" in r else "-"
        dpo = f"{r['margin']:.3f} / {r['accuracy']:.2f}" if r.get("margin") is not None else ""
        status = r["status"] + (f": {r['error'][:400]}" if r.get("error") else "")
        print(f"| {r['run']} | {status} | {r.get('steps', 0)} ({r.get('total')}) | {rate} | {per} "
              f"| {r['step_s'] or 0:.3f} | {r.get('peak_gib') or 0:.1f} | {loss} | {dpo} |"
              if r.get("step_s") else
              f"| {r['run']} | {status} | {r.get('steps', 0)} ({r.get('total')}) | - | - | - | - | {loss} | {dpo} |")


if __name__ == "__main__":
    main()
