"""Training: Unsloth LoRA runs of Qwen3 through trl's SFTTrainer or DPOTrainer, one subprocess per run.

Public surface: LoraTrainConfig (a run's arguments), TrainingRunner (the app's queue of runs),
run_training_subprocess (a blocking run, for the embedded builder and scripts), the dataset
checks, and the merged export. The run itself is `python -m qwen3arena.train run.yaml`, so
Unsloth's patches never touch the app process. The runner (which needs the DuckDB store) is
imported lazily so that the training process itself needs nothing but the training stack.
"""

from typing import Any

from qwen3arena.train.batching import PACKED_ON_CPU, grouping_multiple
from qwen3arena.train.config import ALL_PROJECTIONS, OPTIMS, LoraTrainConfig
from qwen3arena.train.data import (
    DatasetError, LengthStats, Upload, accept_upload, file_sha256, length_stats, load_conversations, load_preferences,
    render_preference_preview, render_preview,
)
from qwen3arena.train.launch import TrainingFailed, export_merged_subprocess, run_training_subprocess

_RUNNER_NAMES = {"RunProgress", "RunRejected", "TrainingRunner"}


def __getattr__(name: str) -> Any:
    if name in _RUNNER_NAMES:
        from qwen3arena.train import runner

        return getattr(runner, name)
    raise AttributeError(name)


__all__ = [
    "ALL_PROJECTIONS", "DatasetError", "LengthStats", "LoraTrainConfig", "OPTIMS", "PACKED_ON_CPU", "RunProgress",
    "RunRejected", "TrainingFailed", "TrainingRunner", "Upload", "accept_upload", "export_merged_subprocess", "file_sha256", "grouping_multiple",
    "length_stats", "load_conversations", "load_preferences", "render_preference_preview", "render_preview",
    "run_training_subprocess",
]
