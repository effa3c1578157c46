"""One LoRA SFT run with Unsloth and trl. Runs in its own process (see __main__.py).

Unsloth must be imported before trl, transformers and peft: it patches them on import.
Progress goes to a JSONL file (one event per logging step) that the app polls, so a run
never depends on anyone draining its stdout. SIGTERM asks for a clean stop: the current step
finishes, the adapter trained so far is saved, and the run reports "stopped".
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
    trainer_args,
)
from qwen3arena.train.config import LoraTrainConfig
from qwen3arena.train.data import DatasetError, load_conversations, split_for_training

__all__ = ["DatasetError", "batching_args", "run"]


def batching_args(config: LoraTrainConfig, cuda: bool) -> dict[str, Any]:
    """SFTConfig arguments for how rows become batches (docs/training.md, "Batching")."""
    # Opt-in: on conversations of mixed lengths padded batches ran at 0.12-0.14x of fixed-length
    # tokens/s and packed ones at 0.68-0.87x (H100, docs/benchmarks.md), but packing changes what
    # a step is (batch x max_length tokens), and a small round's dataset would get a few large
    # steps. On a CPU Unsloth has no kernel that keeps packed conversations apart.
    if config.packing:
        # "bfd" packs whole conversations into rows of max_length and runs them padding-free
        # (position_ids restart per conversation; attention never crosses one).
        return {"packing": True, "packing_strategy": config.packing_strategy,
                "pad_to_multiple_of": config.pad_to_multiple_of}
    args: dict[str, Any] = {"packing": False, "pad_to_multiple_of": config.pad_to_multiple_of}
    padding_free = config.padding_free
    if padding_free is None and cuda:
        # Unsloth turns padding-free on by itself on an H100; its varlen batches skip the
        # per-block compile and ran 0.78x of a bare Unsloth loop on fixed-length rows, against
        # 1.03x padded (docs/benchmarks.md).
        padding_free = False
    if padding_free is not None:
        args["padding_free"] = padding_free
    return args


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
    _drop_full_attention_masks(trainer)
    if stop.requested:
        emit("stopped", step=0, saved=False)
        return {"steps": 0, "stopped": True, "saved": False}
    emit("training", total=trainer.state.max_steps or None)
    result = trainer.train()
    return save_checkpoint(model, tokenizer, config, out, trainer, result, stop, emit)


def _drop_full_attention_masks(trainer: Any) -> None:
    """A padded batch whose rows are all the same length carries an all-ones attention mask; without
    it the model runs plain causal attention (as a bare training loop does) instead of a masked
    path. Checked on the host before the batch is moved to the device."""
    collator = getattr(trainer, "data_collator", None)
    original = getattr(collator, "torch_call", None)
    if original is None:
        return

    def torch_call(examples):
        batch = original(examples)
        mask = batch.get("attention_mask")
        if mask is not None and not mask.is_cuda and bool(mask.all()):
            del batch["attention_mask"]
        return batch

    collator.torch_call = torch_call
