"""Starts a training run as a subprocess and follows its progress file.

One GPU (or the CPU): `python -m qwen3arena.train run.yaml --progress events.jsonl`. Several GPUs:
the same module under torchrun (`python -m torch.distributed.run --standalone --nproc_per_node N
-m qwen3arena.train ...`), one process a GPU, NCCL between them. torchrun is the child either way:
SIGTERM to it is forwarded to every rank (each then stops after the same step and rank 0 saves the
adapter), and only rank 0 writes the progress file, so following, stopping and registering a run
are the same code for both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from qwen3arena import hardware
from qwen3arena.errors import Refused
from qwen3arena.procs import ChildProcess, child_env, exit_reason
from qwen3arena.train.config import LoraTrainConfig

# Defaults for a data-parallel run's environment; a variable the user set wins. NVLink multicast
# (NVLS) off: it needs the fabric manager and multicast-capable drivers, and where they are missing
# (containers, rented machines) NCCL fails or hangs at the first collective instead of falling back.
DISTRIBUTED_ENV = {"NCCL_NVLS_ENABLE": "0"}


class TrainingFailed(Refused, RuntimeError):
    """The run exited with an error; the message carries the reason and the log tail."""


def training_command(config_path: str | Path, progress: str | Path | None = None, world_size: int = 1,
                     python: str = sys.executable) -> list[str]:
    """The command that runs one training: this module in one process, or under torchrun with
    one process a GPU when `world_size` > 1. The runner, the blocking launcher and the preview's
    "Equivalent command" all come from here."""
    train = ["-m", "qwen3arena.train", str(config_path)] + (["--progress", str(progress)] if progress else [])
    if world_size <= 1:
        return [python, *train]
    return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world_size), *train]


def training_env(world_size: int, env: Mapping[str, str]) -> dict[str, str]:
    """`env` with a data-parallel run's defaults where it sets nothing: DISTRIBUTED_ENV, and the
    host's cores shared among the ranks (torchrun would otherwise give each rank one thread)."""
    if world_size <= 1:
        return dict(env)
    threads = str(max(1, (os.cpu_count() or 1) // world_size))
    return {**DISTRIBUTED_ENV, "OMP_NUM_THREADS": threads, **env}


def world_size_of(config: LoraTrainConfig) -> int:
    """How many processes `config` trains with here; RunRejected when this machine lacks its GPUs.
    One GPU asks nothing of the hardware (torch stays out of a process that has not loaded it)."""
    return 1 if config.gpus == 1 else config.world_size(hardware.cuda_device_count())


def run_training_subprocess(
    config: LoraTrainConfig,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Runs one training to the end (blocking); returns the adapter directory. The child stops
    (and saves) if this call is interrupted."""
    world = world_size_of(config)  # refused before anything is written
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = config.to_yaml(out / "run.yaml")
    progress = out / "progress.jsonl"
    progress.unlink(missing_ok=True)
    child = ChildProcess(config.name, training_command(config_path, progress, world), out,
                         training_env(world, child_env(env)), log_name="train.log", events_name=progress.name)
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
        failed = next((e for e in child.events() if e.get("event") == "failed"), None)  # the first rank's
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
