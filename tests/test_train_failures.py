"""A run that dies of GPU memory says so and what to change; the app reads a GPU's free memory
without touching CUDA itself. (The real out-of-memory run on an H200 is in docs/benchmarks.md.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from qwen3arena.hardware import gpu_states
from qwen3arena.train import LoraTrainConfig
from qwen3arena.train.failures import GpuMemory, failure_reason, is_out_of_memory, out_of_memory_reason


def config(**overrides) -> LoraTrainConfig:
    values = dict(name="big", base_model="/m", dataset="/d.jsonl", output_dir="/o",
                  per_device_train_batch_size=64, max_length=8192)
    values.update(overrides)
    return LoraTrainConfig(**values)


def test_torch_out_of_memory_is_named_with_the_settings_to_change():
    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    assert is_out_of_memory(exc)
    reason = failure_reason(exc, config())
    assert reason.startswith("CUDA out of memory")
    assert "per_device_train_batch_size (now 64" in reason and "max_length (now 8192)" in reason
    assert "4-bit loading" in reason and "Tried to allocate 20.00 GiB" in reason
    assert "4-bit loading" not in failure_reason(exc, config(load_in_4bit=True))  # already 4-bit


def test_memory_held_by_a_neighbour_points_at_vllm():
    crowded = GpuMemory(total_gib=139.8, free_gib=0.4, own_reserved_gib=30.0, own_peak_gib=29.1)
    reason = out_of_memory_reason(config(), crowded)
    assert "other processes held 109.4 GiB" in reason and "vllm.gpu_memory_utilization" in reason
    alone = GpuMemory(total_gib=139.8, free_gib=0.5, own_reserved_gib=138.8, own_peak_gib=137.0)
    assert "vllm" not in out_of_memory_reason(config(), alone)


def test_other_failures_pass_through_unchanged():
    exc = ValueError("bad things")
    assert not is_out_of_memory(exc)
    assert failure_reason(exc, config()) == "ValueError: bad things"
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be ..."))


def test_gpu_states_reads_nvidia_smi_and_attributes_the_server(tmp_path: Path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"""#!/bin/sh
case "$1" in
  --query-gpu=*) echo "0, GPU-aaa, NVIDIA H200, 143771, 30012"; echo "1, GPU-bbb, NVIDIA H200, 143771, 143000";;
  --query-compute-apps=*) echo "GPU-aaa, {os.getpid()}, 102400"; echo "GPU-aaa, 999999, 5120";;
esac
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    first, second = gpu_states(server_pid=os.getpid())
    assert (first.index, first.name, round(first.free_gib, 1), round(first.total_gib, 1)) == (0, "NVIDIA H200", 29.3, 140.4)
    assert first.vllm_gib == pytest.approx(100.0)  # only the server's processes, not pid 999999
    assert second.vllm_gib == 0.0
    assert first.summary() == "GPU 0 (NVIDIA H200): 29.3 GiB free of 140.4 GiB; the vLLM server holds 100.0 GiB"


def test_no_nvidia_smi_means_no_gpus(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_states() == []
