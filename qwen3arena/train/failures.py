"""Why a training process died, in words a person can act on.

The reason goes into the run's progress file ("failed" event), which the runner turns into the
run's error in the Train tab, the API and the CLI. Out of GPU memory is the failure people meet
most on a GPU, and the bare torch message ("Tried to allocate 2.00 GiB ...") does not say what to
change: this one does, with the run's own settings and how much of the GPU other processes (a
vLLM server on the same GPU, above all) were holding.

Light on purpose: torch is read from sys.modules (it is loaded by the time a run fails), so the
module imports nothing heavy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from qwen3arena.train.config import LoraTrainConfig

GIB = 2**30
# Other processes holding less than this are the CUDA context and the like, not a neighbour.
NEIGHBOUR_GIB = 1.0


@dataclass(frozen=True)
class GpuMemory:
    """One GPU's memory when a run failed: the device's, this process's and everyone else's."""

    total_gib: float
    free_gib: float
    own_reserved_gib: float
    own_peak_gib: float

    @property
    def others_gib(self) -> float:
        return max(self.total_gib - self.free_gib - self.own_reserved_gib, 0.0)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's typed OOM, or the CUDA runtime's own error raised as a plain RuntimeError by
    kernels that allocate outside the caching allocator (cuBLAS workspaces, bitsandbytes)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "CUDA error: out of memory" in str(exc)


def gpu_memory() -> GpuMemory | None:
    """The current GPU's memory as the failed run leaves it; None without CUDA."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info()
        return GpuMemory(total / GIB, free / GIB, torch.cuda.memory_reserved() / GIB,
                         torch.cuda.max_memory_allocated() / GIB)
    except Exception:  # noqa: BLE001 - a broken context must not hide the original failure
        return None


def out_of_memory_reason(config: LoraTrainConfig, memory: GpuMemory | None) -> str:
    """"CUDA out of memory", where the memory went, and the settings to change, most effective
    first."""
    parts = ["CUDA out of memory"]
    if memory is not None:
        parts[0] += (f" on a {memory.total_gib:.0f} GiB GPU: this run peaked at {memory.own_peak_gib:.1f} GiB, "
                     f"other processes held {memory.others_gib:.1f} GiB")
    changes = [f"a smaller per_device_train_batch_size (now {config.per_device_train_batch_size}; raise "
               f"gradient_accumulation_steps, now {config.gradient_accumulation_steps}, to keep the same "
               f"batch per update)",
               f"a shorter max_length (now {config.max_length})"]
    if not config.load_in_4bit:
        changes.append("4-bit loading (QLoRA: load_in_4bit)")
    if not config.gradient_checkpointing:
        changes.append("gradient checkpointing")
    if memory is not None and memory.others_gib >= NEIGHBOUR_GIB:
        changes.append(f"less memory for the other processes on this GPU ({memory.others_gib:.1f} GiB): a vLLM "
                       f"server there keeps vllm.gpu_memory_utilization of the whole GPU; lower it, "
                       f"or serve from another GPU")
    return f"{parts[0]}. Try {'; '.join(changes)}."


def failure_reason(exc: BaseException, config: LoraTrainConfig | None = None) -> str:
    """The "failed" event's reason for an exception that ended a run."""
    text = f"{type(exc).__name__}: {exc}"
    if is_out_of_memory(exc) and config is not None:
        return f"{out_of_memory_reason(config, gpu_memory())} ({text[:300]})"
    return text[:1000]

