"""Training: Unsloth LoRA runs of Qwen3 through trl's SFTTrainer, one subprocess per run.

Public surface: LoraTrainConfig (the run's arguments) and run_training_subprocess (what the
app and the embedded builder call). The run itself lives in sft.py and is started as
`python -m qwen3arena.train run.yaml`, so Unsloth's patches never touch the app process.
"""

from qwen3arena.train.config import ALL_PROJECTIONS, LoraTrainConfig
from qwen3arena.train.launch import TrainingFailed, run_training_subprocess

__all__ = ["ALL_PROJECTIONS", "LoraTrainConfig", "TrainingFailed", "run_training_subprocess"]
