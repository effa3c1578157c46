"""`python -m qwen3arena.train run.yaml [--progress events.jsonl]`: one LoRA SFT run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qwen3arena.train.config import LoraTrainConfig
from qwen3arena.train.sft import DatasetError, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen3arena.train", description=__doc__)
    parser.add_argument("config", type=Path, help="run arguments (LoraTrainConfig as YAML)")
    parser.add_argument("--progress", type=Path, help="JSONL file for progress events")
    args = parser.parse_args(argv)
    config = LoraTrainConfig.from_yaml(args.config)
    progress = args.progress or Path(config.output_dir) / "progress.jsonl"
    progress.parent.mkdir(parents=True, exist_ok=True)
    try:
        metrics = run(config, progress)
    except DatasetError as exc:
        _fail(progress, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:
        _fail(progress, f"{type(exc).__name__}: {exc}")
        raise
    print(json.dumps({k: v for k, v in metrics.items() if k != "losses"}))
    return 0


def _fail(progress: Path, reason: str) -> None:
    with open(progress, "a") as f:
        f.write(json.dumps({"event": "failed", "time": time.time(), "reason": reason}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
