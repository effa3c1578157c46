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
    save_checkpoint,
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
            output_dir=str(out / "trainer"),
            beta=config.beta,
            per_device_train_batch_size=config.per_device_train_batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type=config.lr_scheduler_type,
            num_train_epochs=config.num_train_epochs,
            max_steps=config.max_steps,
            warmup_steps=config.warmup_steps,
            weight_decay=config.weight_decay,
            max_length=config.max_length,
            logging_steps=1,
            save_strategy="no",
            report_to="wandb" if config.wandb else "none",
            run_name=config.wandb_run_name or config.name,
            seed=config.seed,
            include_num_input_tokens_seen="non_padding",
        ),
    )
    if stop.requested:
        emit("stopped", step=0, saved=False)
        return {"steps": 0, "stopped": True, "saved": False}
    emit("training", total=trainer.state.max_steps or None)
    result = trainer.train()
    return save_checkpoint(model, tokenizer, config, out, trainer, result, stop, emit)
