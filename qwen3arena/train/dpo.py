"""One LoRA DPO run with Unsloth and trl's DPOTrainer, on preference pairs from the arena.

Runs in its own process like SFT (see __main__.py) and writes the same progress events, plus
the reward margin and accuracy that tell whether the policy learns the preferences. The
reference is the model the run starts from, at no second copy of the base weights: without a
parent that is the base (trl disables the adapter), with a parent (init_adapter) trl keeps a
frozen copy of the parent's adapter as "ref", so DPO stays close to the parent checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen3arena.train.common import (
    Emit,
    StopRequest,
    event_writer,
    load_lora_model,
    prepare_environment,
    progress_callback,
    train_and_save,
    trainer_args,
)
from qwen3arena.train.config import LoraTrainConfig
from qwen3arena.train.data import load_preferences

DPO_METRICS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def run(config: LoraTrainConfig, progress_path: Path) -> dict[str, Any]:
    """Trains on preference pairs, saves the adapter and returns the final metrics."""
    stop = StopRequest()
    prepare_environment(config)
    rows = load_preferences(config.dataset)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with event_writer(progress_path) as emit:
        emit("loading", base_model=config.base_model, rows=len(rows), method="dpo")
        return _train(config, rows, out, emit, stop)


def _train(config: LoraTrainConfig, rows: list[dict[str, Any]], out: Path, emit: Emit,
           stop: StopRequest) -> dict[str, Any]:
    model, tokenizer = load_lora_model(config, emit)
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(rows),
        callbacks=[progress_callback(config, emit, stop, DPO_METRICS)],
        args=DPOConfig(
            **trainer_args(config, out),
            beta=config.beta,
        ),
    )
    return train_and_save(model, tokenizer, config, out, trainer, stop, emit)
