"""Training entry points, each its own process:

  python -m qwen3arena.train RUN.yaml [--progress events.jsonl]   one LoRA run (SFT or DPO, by `method`)
  python -m qwen3arena.train export ADAPTER_DIR OUT_DIR           merged 16-bit export

A run with `gpus` above 1 (or `all` on a machine with several GPUs) runs under torchrun, one
process a GPU:
  python -m torch.distributed.run --standalone --nproc_per_node N -m qwen3arena.train RUN.yaml ...
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from qwen3arena.config import ConfigError
from qwen3arena.train.config import LoraTrainConfig, RunRejected
from qwen3arena.train.data import DatasetError
from qwen3arena.train.common import rank, world_size  # light: Unsloth is imported when a run loads it
from qwen3arena.train.failures import failure_reason


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return _export(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m qwen3arena.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="run arguments (LoraTrainConfig as YAML)")
    parser.add_argument("--progress", type=Path, help="JSONL file for progress events")
    args = parser.parse_args(argv)
    try:  # the same rules the app's runner applies: a run.yaml from a shell is checked alike
        config = LoraTrainConfig.from_yaml(args.config)
        config.check_runnable()
        if world_size() == 1:  # under torchrun the launcher chose the processes; else check the GPUs
            _check_single_process(config, args)
    except (RunRejected, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress = args.progress or Path(config.output_dir) / "progress.jsonl"
    progress.parent.mkdir(parents=True, exist_ok=True)
    if config.method == "dpo":
        from qwen3arena.train.dpo import run
    else:
        from qwen3arena.train.sft import run

    try:
        metrics = run(config, progress)
    except DatasetError as exc:
        _fail(progress, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:
        _fail(progress, failure_reason(exc, config))
        raise
    if rank() == 0:
        print(json.dumps({k: v for k, v in metrics.items() if k != "losses"}))
    return 0


def _check_single_process(config: LoraTrainConfig, args: argparse.Namespace) -> None:
    """A run asking for several GPUs, started without torchrun: refused (also on a machine without
    them), naming the command that runs it."""
    if config.gpus == 1:
        return
    from qwen3arena.train.launch import training_command, world_size_of

    world = world_size_of(config)
    if world > 1:
        command = training_command(args.config, args.progress, world, python="python")
        raise RunRejected(f"gpus: {config.gpus} trains one process a GPU; start it with: {shlex.join(command)}")


def _fail(progress: Path, reason: str) -> None:
    """The "failed" event. Any rank writes its own (rank 0 alone would not know why rank 2 died),
    naming the rank when there are several."""
    event = {"event": "failed", "time": time.time(), "reason": reason}
    if world_size() > 1:
        event.update(rank=rank(), reason=f"rank {rank()}: {reason}")
    with open(progress, "a") as f:
        f.write(json.dumps(event) + "\n")


def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen3arena.train export")
    parser.add_argument("adapter", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    from qwen3arena.train.export import export_merged

    try:
        out = export_merged(args.adapter, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
