"""Starts a training run as a subprocess and follows its progress file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from qwen3arena.errors import Refused
from qwen3arena.procs import ChildProcess, child_env, exit_reason
from qwen3arena.train.config import LoraTrainConfig


class TrainingFailed(Refused, RuntimeError):
    """The run exited with an error; the message carries the reason and the log tail."""


def run_training_subprocess(
    config: LoraTrainConfig,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Runs one training to the end (blocking); returns the adapter directory. The child stops
    (and saves) if this call is interrupted."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = config.to_yaml(out / "run.yaml")
    progress = out / "progress.jsonl"
    progress.unlink(missing_ok=True)
    child = ChildProcess(config.name, [sys.executable, "-m", "qwen3arena.train", str(config_path),
                                       "--progress", str(progress)],
                         out, child_env(env), log_name="train.log", events_name=progress.name)
    child.start()
    seen = 0
    try:
        while True:
            code = child.poll()
            events = child.events()  # skips a line still being written
            if on_event:
                for event in events[seen:]:
                    on_event(event)
            seen = len(events)
            if code is not None:
                break
            time.sleep(0.5)
    finally:
        child.stop(60.0)
    if code != 0:
        failed = next((e for e in reversed(child.events()) if e.get("event") == "failed"), None)
        reason = failed.get("reason") if failed else child.exit_reason(lines=30)
        raise TrainingFailed(f"training run {config.name!r} failed: {reason}")
    return out


def export_merged_subprocess(adapter_dir: str | Path, out_dir: str | Path, timeout_s: float = 3600) -> Path:
    """Runs the merged 16-bit export in its own process (Unsloth patches stay out of the app)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "qwen3arena.train", "export", str(adapter_dir), str(out_dir)],
        capture_output=True, text=True, timeout=timeout_s, env=child_env(),
    )
    if result.returncode != 0:
        reason = exit_reason(result.returncode, result.stdout + result.stderr, lines=15)
        raise TrainingFailed(f"export of {adapter_dir} failed: {reason}")
    return out_dir
