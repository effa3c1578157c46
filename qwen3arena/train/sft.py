"""One LoRA SFT run with Unsloth and trl. Runs in its own process (see __main__.py).

Unsloth must be imported before trl, transformers and peft: it patches them on import.
Progress goes to a JSONL file (one event per logging step) that the app polls, so a run
never depends on anyone draining its stdout. SIGTERM asks for a clean stop: the current step
finishes, the adapter trained so far is saved, and the run reports "stopped".
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from qwen3arena.train.common import load_lora_model
from qwen3arena.train.config import LoraTrainConfig
from qwen3arena.train.data import DatasetError, load_conversations, split_for_training

__all__ = ["DatasetError", "batching_args", "run"]


class _StopRequest:
    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True


def batching_args(config: LoraTrainConfig, cuda: bool) -> dict[str, Any]:
    """SFTConfig arguments for how rows become batches (docs/training.md, "Batching")."""
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
    stop = _StopRequest()
    os.environ.setdefault("UNSLOTH_SKIP_TORCHVISION_CHECK", "1")
    if config.wandb:
        os.environ.setdefault("WANDB_PROJECT", config.wandb_project)
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")
    rows = load_conversations(config.dataset)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(progress_path, "a", buffering=1) as events:

        def emit(kind: str, **data: Any) -> None:
            events.write(json.dumps({"event": kind, "time": time.time(), **data}) + "\n")

        emit("loading", base_model=config.base_model, rows=len(rows))
        return _train(config, rows, out, emit, stop)


def _train(config: LoraTrainConfig, rows: list[dict[str, Any]], out: Path,
           emit: Callable[..., None], stop: _StopRequest) -> dict[str, Any]:
    import torch

    model, tokenizer = load_lora_model(config, emit)  # imports Unsloth first
    if torch.cuda.is_available() and not config.cudnn_attention:
        # cuDNN attention (SDPA's first choice on an H100 with torch 2.11) made Unsloth pad every
        # attention call by one 128-token bucket; the flash kernel ran the same steps 1.17x faster
        # (1.7B bf16, docs/benchmarks.md). This process only trains, so the switch stays here.
        torch.backends.cuda.enable_cudnn_sdp(False)
    from datasets import Dataset
    from transformers import Trainer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list(split_for_training(rows, config.answers_only))

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.time()
            self.seen = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.time()
            if config.wandb:
                import wandb

                if wandb.run is not None:
                    offline = wandb.run.settings.mode == "offline" if hasattr(wandb.run, "settings") else False
                    emit("wandb", url=None if offline else wandb.run.url, dir=wandb.run.dir, offline=offline)

        def on_step_end(self, args, state, control, **kwargs):
            if stop.requested:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            elapsed = time.time() - self.start
            total = max(state.max_steps, 1)
            remaining = elapsed / max(state.global_step, 1) * (total - state.global_step)
            seen = state.num_input_tokens_seen or 0  # real (non-padding) tokens
            step_tokens, self.seen = seen - self.seen, seen
            emit("step", step=state.global_step, total=total, loss=float(logs["loss"]),
                 lr=logs.get("learning_rate"), epoch=logs.get("epoch"), elapsed_s=elapsed,
                 remaining_s=remaining, tokens_per_s=seen / elapsed if elapsed > 0 else None,
                 step_tokens=step_tokens,
                 gpu_peak_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None)

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
        callbacks=[Progress()],
        args=SFTConfig(
            output_dir=str(out / "trainer"),
            per_device_train_batch_size=config.per_device_train_batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type=config.lr_scheduler_type,
            num_train_epochs=config.num_train_epochs,
            max_steps=config.max_steps,
            warmup_steps=config.warmup_steps,
            weight_decay=config.weight_decay,
            max_length=config.max_length,
            **batching_args(config, torch.cuda.is_available()),
            logging_steps=1,
            logging_nan_inf_filter=False,  # a host sync per step; a NaN loss should show anyway
            save_strategy="no",
            report_to="wandb" if config.wandb else "none",
            run_name=config.wandb_run_name or config.name,
            seed=config.seed,
            include_num_input_tokens_seen="non_padding",
        ),
    )
    _drop_full_attention_masks(trainer)
    if stop.requested:
        emit("stopped", step=0, saved=False)
        return {"steps": 0, "stopped": True, "saved": False}
    emit("training", total=trainer.state.max_steps or None)
    result = trainer.train()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config.to_yaml(out / "train_config.yaml")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {"train_loss": result.training_loss, "steps": result.global_step,
               "stopped": stop.requested, "saved": True, "final_loss": losses[-1] if losses else None,
               "losses": losses}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    summary = {k: v for k, v in metrics.items() if k != "losses"}
    emit("stopped" if stop.requested else "done", **summary)
    return metrics


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
