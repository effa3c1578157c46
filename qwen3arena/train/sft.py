"""One LoRA SFT run with Unsloth and trl. Runs in its own process (see __main__.py).

Unsloth must be imported before trl, transformers and peft: it patches them on import.
Progress goes to a JSONL file (one event per logging step) that the app polls, so a run
never depends on anyone draining its stdout. SIGTERM asks for a clean stop: the current step
finishes, the adapter trained so far is saved, and the run reports "stopped".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen3arena.train.batching import (
    PACKED_ON_CPU,
    LengthGroupedBatches,
    batching_args,
    drop_redundant_attention_masks,
)
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
from qwen3arena.train.data import DatasetError, load_conversations, split_for_training

__all__ = ["DatasetError", "run"]


def run(config: LoraTrainConfig, progress_path: Path) -> dict[str, Any]:
    """Trains, saves the adapter and its tokenizer, and returns the final metrics."""
    stop = StopRequest()
    prepare_environment(config)
    rows = load_conversations(config.dataset)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with event_writer(progress_path) as emit:
        emit("loading", base_model=config.base_model, rows=len(rows))
        return _train(config, rows, out, emit, stop)


def _train(config: LoraTrainConfig, rows: list[dict[str, Any]], out: Path, emit: Emit,
           stop: StopRequest) -> dict[str, Any]:
    import torch

    model, tokenizer = load_lora_model(config, emit)  # imports Unsloth first; sets the attention kernels
    from datasets import Dataset
    from transformers import Trainer
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list(split_for_training(rows, config.answers_only))
    if config.batching == "packed" and not torch.cuda.is_available():
        emit("note", message=PACKED_ON_CPU)

    class LeanSFTTrainer(SFTTrainer):
        """trl computes its loss through its own fused LM head plus entropy and token-accuracy
        metrics (a host sync per step); the model's own loss is Unsloth's fused cross-entropy,
        measurably faster (docs/benchmarks.md), and the app shows neither metric."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

        # transformers counts the tokens seen with a .item() right after the backward pass, which
        # makes the host wait for the GPU before it can queue the optimizer step. Here the count
        # stays on the device and is read when the step is logged, where the loss is read anyway.
        _pending_tokens = None

        def _track_num_input_tokens(self, inputs):
            if self.args.include_num_input_tokens_seen != "non_padding" or self.args.world_size > 1:
                return super()._track_num_input_tokens(inputs)
            if "attention_mask" in inputs:
                count = inputs["attention_mask"].sum()
            elif getattr(self.processing_class, "pad_token_id", None) is not None:
                count = (inputs["input_ids"] != self.processing_class.pad_token_id).sum()
            else:
                count = torch.tensor(inputs["input_ids"].numel())
            self._pending_tokens = count if self._pending_tokens is None else self._pending_tokens + count

        def get_train_dataloader(self):
            if config.batching != "grouped":
                return super().get_train_dataloader()
            import pyarrow.compute as pc
            from torch.utils.data import DataLoader

            dataset = self._remove_unused_columns(self.train_dataset, description="training")
            # lengths straight from the Arrow column: no Python list per row on a large dataset
            lengths = pc.list_value_length(dataset.with_format("arrow")["input_ids"]).to_pylist()
            batches = LengthGroupedBatches(lengths,
                                           budget=config.per_device_train_batch_size * config.max_length,
                                           seed=config.seed, multiple=self.args.pad_to_multiple_of or 1)
            loader = DataLoader(dataset, batch_sampler=batches, collate_fn=self.data_collator,
                                num_workers=self.args.dataloader_num_workers,
                                pin_memory=self.args.dataloader_pin_memory)
            return self.accelerator.prepare(loader)

        def log(self, logs, *args, **kwargs):
            if self._pending_tokens is not None:
                self.state.num_input_tokens_seen += int(self._pending_tokens.item())
                self._pending_tokens = None
            return super().log(logs, *args, **kwargs)

    trainer = LeanSFTTrainer(
        model=model,
        processing_class=tokenizer,
        train_dataset=dataset,
        callbacks=[progress_callback(config, emit, stop)],
        args=SFTConfig(
            **trainer_args(config, out),
            **batching_args(config, torch.cuda.is_available()),
        ),
    )
    drop_redundant_attention_masks(trainer.data_collator)
    return train_and_save(model, tokenizer, config, out, trainer, stop, emit)
