"""Starts a training run as a subprocess and follows its progress file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from qwen3arena.procs import exit_reason, log_tail, read_events
from qwen3arena.train.config import LoraTrainConfig


class TrainingFailed(RuntimeError):
    """The run exited with an error; the message carries the reason and the log tail."""


def run_training_subprocess(
    config: LoraTrainConfig,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Runs one training to the end (blocking); returns the adapter directory."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = config.to_yaml(out / "run.yaml")
    progress = out / "progress.jsonl"
    progress.unlink(missing_ok=True)
    log_path = out / "train.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "qwen3arena.train", str(config_path), "--progress", str(progress)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        seen = 0
        while True:
            code = process.poll()
            events = read_events(progress)  # skips a line still being written
            if on_event:
                for event in events[seen:]:
                    on_event(event)
            seen = len(events)
            if code is not None:
                break
            time.sleep(0.5)
    if code != 0:
        failed = next((e for e in reversed(read_events(progress)) if e.get("event") == "failed"), None)
        reason = failed.get("reason") if failed else exit_reason(code, log_tail(log_path, 30), lines=30)
        raise TrainingFailed(f"training run {config.name!r} failed: {reason}")
    return out


def export_merged_subprocess(adapter_dir: str | Path, out_dir: str | Path, timeout_s: float = 3600) -> Path:
    """Runs the merged 16-bit export in its own process (Unsloth patches stay out of the app)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "qwen3arena.train", "export", str(adapter_dir), str(out_dir)],
        capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")},
    )
    if result.returncode != 0:
        reason = exit_reason(result.returncode, result.stdout + result.stderr, lines=15)
        raise TrainingFailed(f"export of {adapter_dir} failed: {reason}")
    return out_dir
