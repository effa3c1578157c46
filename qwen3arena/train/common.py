"""What every training method shares: the Unsloth model with its LoRA, a parent adapter to
start from, progress events, a clean stop on SIGTERM, and the files a checkpoint leaves.

On several GPUs (torchrun: RANK, LOCAL_RANK and WORLD_SIZE set) every rank runs this same code;
the Trainer (through accelerate) wraps the model in DDP and shards the batches, Unsloth loads the
model on the rank's own GPU. Only rank 0 writes progress events and the checkpoint's files, and
the ranks agree on a stop before acting on it.

Import this module only inside the training process: it imports Unsloth (which patches trl,
transformers and peft) before anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from qwen3arena.train.attention import backport_varlen_gqa
from qwen3arena.train.config import LoraTrainConfig
from qwen3arena.train.data import DatasetError
from qwen3arena.train.isolation import import_unsloth, vllm_in_process

Emit = Callable[..., None]


def rank() -> int:
    """This process's global rank under torchrun (RANK), 0 in a single-process run."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def world_size() -> int:
    """The processes training together (torchrun's WORLD_SIZE), 1 in a single-process run."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


class StopRequest:
    """SIGTERM asks for a clean stop: the current step ends and the adapter so far is saved."""

    def __init__(self) -> None:
        self.requested = False
        self._group: Any = None
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def agreed(self) -> bool:
        """Whether to stop now. One process: the request itself. Several: whether any rank was
        asked, agreed over a CPU (gloo) all-reduce, so every rank stops after the same step; a rank
        stopping alone would leave the others waiting in the next step's gradient all-reduce.
        Collective: every rank calls it at the same point (each step end, and before training)."""
        if world_size() <= 1:
            return self.requested
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            return self.requested
        if self._group is None:  # a CPU group: the flag never waits for the GPU's queue
            self._group = dist.new_group(backend="gloo")
        flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        self.requested = bool(flag.item())
        return self.requested


def prepare_environment(config: LoraTrainConfig) -> None:
    if config.batching == "grouped":
        # CPU: oneDNN caches kernels per batch shape (1,024 by default) and grouped batches change
        # shape; 64 kept the speed and cut a run's growth (docs/benchmarks.md). Read at first use.
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    if config.wandb:
        os.environ.setdefault("WANDB_PROJECT", config.wandb_project)
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")


@contextlib.contextmanager
def event_writer(progress_path: Path) -> Iterator[Emit]:
    """emit(kind, **data): one JSON line per event, line-buffered so the app sees it at once.
    On several GPUs only rank 0 writes (the others would repeat each event); theirs do nothing."""
    if rank() != 0:
        yield lambda kind, **data: None
        return
    with open(progress_path, "a", buffering=1) as events:
        def emit(kind: str, **data: Any) -> None:
            events.write(json.dumps({"event": kind, "time": time.time(), **data}) + "\n")

        yield emit


def load_lora_model(config: LoraTrainConfig, emit: Emit) -> tuple[Any, Any]:
    """Unsloth model + tokenizer with a fresh LoRA, or the parent adapter's weights to go on from."""
    import torch

    if config.load_in_4bit and not torch.cuda.is_available():
        raise DatasetError("4-bit (QLoRA) loading needs a CUDA GPU (bitsandbytes); untick 4-bit on a CPU")
    if backport_varlen_gqa():
        emit("note", message="torch lacks varlen_attn(enable_gqa=); backported so packed batches "
                             "run on one flash varlen kernel")
    FastLanguageModel = import_unsloth().FastLanguageModel  # first: it patches trl/transformers/peft

    rank, alpha, targets = config.rank, config.alpha, list(config.target_modules)
    parent = _parent_adapter_config(config.init_adapter) if config.init_adapter else None
    if parent is not None:
        # the parent's weights only fit a LoRA of the same shape
        rank, alpha, targets = int(parent["r"]), int(parent.get("lora_alpha", alpha)), _targets(parent, targets)
        if (rank, alpha, sorted(targets)) != (config.rank, config.alpha, sorted(config.target_modules)):
            emit("note", message=f"continuing from {config.init_adapter}: using its LoRA shape "
                                 f"(rank {rank}, alpha {alpha}, {', '.join(targets)})")
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=config.base_model, max_seq_length=config.max_length,
        load_in_4bit=config.load_in_4bit, dtype=None,
    )
    model = FastLanguageModel.get_peft_model(
        model, r=rank, lora_alpha=alpha, lora_dropout=config.dropout, target_modules=targets,
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed,
    )
    if parent is not None:
        _load_parent_weights(model, Path(config.init_adapter))  # type: ignore[arg-type]
    if torch.cuda.is_available() and not config.cudnn_attention:
        # cuDNN attention (SDPA's first choice on an H100 with torch 2.11) made Unsloth pad every
        # attention call by one 128-token bucket; the flash kernel ran the same steps 1.17x faster
        # (1.7B bf16, docs/benchmarks.md). This process only trains, so the switch is process-wide.
        torch.backends.cuda.enable_cudnn_sdp(False)
    return model, tokenizer


def _parent_adapter_config(path: str) -> dict[str, Any]:
    config_file = Path(path) / "adapter_config.json"
    if not config_file.exists():
        raise DatasetError(f"Parent adapter {path}: no adapter_config.json there")
    return json.loads(config_file.read_text())


def _targets(parent: dict[str, Any], fallback: list[str]) -> list[str]:
    targets = parent.get("target_modules")
    if isinstance(targets, str):  # peft stores a regex for some configs
        return fallback
    return sorted(targets or fallback)


def _load_parent_weights(model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.exists():
        raise DatasetError(f"Parent adapter {adapter_dir}: no adapter_model.safetensors there")
    result = set_peft_model_state_dict(model, load_file(str(weights)))
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise DatasetError(f"Parent adapter {adapter_dir} does not fit this base model "
                           f"({len(unexpected)} weights without a place, e.g. {unexpected[0]})")


def trainer_args(config: LoraTrainConfig, out: Path) -> dict[str, Any]:
    """The TrainingArguments every method shares (SFTConfig and DPOConfig take them all).
    per_device_train_batch_size is each GPU's: under DDP an update sees batch x GPUs x accumulation."""
    distributed = dict(
        # every LoRA weight gets a gradient each step (the targets are the decoder's projections);
        # transformers' default for a PEFT model (True) walks the autograd graph each step, and under
        # Unsloth's reentrant gradient checkpointing marks weights "ready twice"
        ddp_find_unused_parameters=False,
    ) if world_size() > 1 else {}
    return dict(
        **distributed,
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        optim=config.optim,  # explicit: Unsloth's patched configs would default to adamw_8bit
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        logging_steps=1,
        logging_nan_inf_filter=False,  # a host sync per step; a NaN loss should show anyway
        save_strategy="no",
        report_to="wandb" if config.wandb else "none",
        run_name=config.wandb_run_name or config.name,
        seed=config.seed,
        include_num_input_tokens_seen="non_padding",
    )


def progress_callback(config: LoraTrainConfig, emit: Emit, stop: StopRequest,
                      extra_metrics: tuple[str, ...] = ()) -> Any:
    """A TrainerCallback writing one "step" event per logging step (and honouring stop)."""
    import torch
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.time()
            self.seen = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.time()
            # the step count is known only here: the Trainer sets max_steps from the dataloader
            # (epochs x batches) inside train(), after the trainer was built
            world = args.world_size
            emit("training", total=state.max_steps or None,
                 optim=str(getattr(args.optim, "value", args.optim)), world_size=world,
                 global_batch=args.per_device_train_batch_size * args.gradient_accumulation_steps * world)
            if world > 1:
                emit("note", message=config.batch_summary(world))
            if config.wandb:
                import wandb

                if wandb.run is not None:
                    offline = wandb.run.settings.mode == "offline" if hasattr(wandb.run, "settings") else False
                    emit("wandb", url=None if offline else wandb.run.url, dir=wandb.run.dir, offline=offline)

        def on_step_end(self, args, state, control, **kwargs):
            if stop.agreed():
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            elapsed = time.time() - self.start
            total = max(state.max_steps, 1)
            remaining = elapsed / max(state.global_step, 1) * (total - state.global_step)
            seen = state.num_input_tokens_seen or 0  # real (non-padding) tokens
            step_tokens, self.seen = seen - self.seen, seen
            extra = {key.replace("/", "_"): float(logs[key]) for key in extra_metrics if key in logs}
            emit("step", step=state.global_step, total=total, loss=float(logs["loss"]),
                 lr=logs.get("learning_rate"), epoch=logs.get("epoch"), elapsed_s=elapsed,
                 remaining_s=remaining, tokens_per_s=seen / elapsed if elapsed > 0 else None,
                 step_tokens=step_tokens, **extra,
                 gpu_peak_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None)

    return Progress()


def train_and_save(model: Any, tokenizer: Any, config: LoraTrainConfig, out: Path, trainer: Any,
                   stop: StopRequest, emit: Emit) -> dict[str, Any]:
    """Runs the built trainer and saves what it trained; a stop before step 1 saves nothing."""
    if stop.agreed():
        emit("stopped", step=0, saved=False)
        return {"steps": 0, "stopped": True, "saved": False}
    # Unsloth may swap the optimizer (8-bit needs a GPU): say which one actually runs
    optim = str(getattr(trainer.args.optim, "value", trainer.args.optim))
    if optim != config.optim:
        emit("note", message=f"optimizer {config.optim} is not available here; using {optim}")
    result = trainer.train()
    return save_checkpoint(model, tokenizer, config, out, trainer, result, stop, emit)


def save_checkpoint(model: Any, tokenizer: Any, config: LoraTrainConfig, out: Path, trainer: Any,
                    result: Any, stop: StopRequest, emit: Emit) -> dict[str, Any]:
    """Adapter, tokenizer, the run's config and metrics: everything a checkpoint directory holds.
    Written by rank 0 alone: the ranks hold the same weights after DDP's last all-reduce."""
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {"train_loss": result.training_loss, "steps": result.global_step,
               "stopped": stop.requested, "saved": rank() == 0, "final_loss": losses[-1] if losses else None,
               "method": config.method, "losses": losses}
    if rank() != 0:
        return metrics
    adapters = list(getattr(model, "peft_config", {}) or {})
    # DPO from a parent adds a frozen "ref" adapter: the checkpoint is the trained one only
    model.save_pretrained(out, **({"selected_adapters": ["default"]} if "ref" in adapters else {}))
    tokenizer.save_pretrained(out)
    config.to_yaml(out / "train_config.yaml")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    summary = {k: v for k, v in metrics.items() if k != "losses"}
    # proof that the run kept vLLM out (isolation.py): empty unless a probe slipped past it
    emit("process", vllm_loaded=vllm_in_process())
    emit("stopped" if stop.requested else "done", **summary)
    return metrics
