"""One LoRA SFT run with Unsloth and trl. Runs in its own process (see __main__.py).

Unsloth must be imported before trl, transformers and peft: it patches them on import.
Progress goes to a JSONL file (one event per logging step) that the app polls, so a run
never depends on anyone draining its stdout.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from qwen3arena.train.config import LoraTrainConfig


class DatasetError(ValueError):
    """A dataset row is malformed; the message names the row and the problem."""


def load_conversations(path: str | Path) -> list[dict[str, Any]]:
    """Reads a JSONL file in trl's formats ({"messages"} or {"prompt", "completion"})."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: row {number} is not valid JSON ({exc.msg})") from exc
            rows.append(_check_row(row, number, path))
    if not rows:
        raise DatasetError(f"{path}: the dataset is empty")
    return rows


def _check_row(row: Any, number: int, path: str | Path) -> dict[str, Any]:
    where = f"{path}: row {number}"
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    if "messages" in row:
        messages = row["messages"]
        _check_messages(messages, where)
        if messages[-1]["role"] != "assistant":
            raise DatasetError(f"{where}: the last message must be the assistant's answer")
        return {"messages": messages}
    if "prompt" in row and "completion" in row:
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            prompt = [{"role": "user", "content": prompt}]
            completion = [{"role": "assistant", "content": completion}]
        _check_messages(prompt, where + " prompt")
        _check_messages(completion, where + " completion")
        return {"messages": prompt + completion}
    raise DatasetError(f"{where}: expected a 'messages' list or 'prompt' and 'completion'")


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: 'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in {"system", "user", "assistant"}:
            raise DatasetError(f"{where}: message {i} needs a role of system, user or assistant")
        if not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}: message {i} needs text content")


def run(config: LoraTrainConfig, progress_path: Path) -> dict[str, Any]:
    """Trains, saves the adapter and its tokenizer, and returns the final metrics."""
    os.environ.setdefault("UNSLOTH_SKIP_TORCHVISION_CHECK", "1")
    rows = load_conversations(config.dataset)
    import unsloth  # noqa: F401  (must come first: it patches trl/transformers/peft)
    from unsloth import FastLanguageModel
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    events = open(progress_path, "a", buffering=1)

    def emit(kind: str, **data: Any) -> None:
        events.write(json.dumps({"event": kind, "time": time.time(), **data}) + "\n")

    emit("loading", base_model=config.base_model)
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=config.base_model,
        max_seq_length=config.max_length,
        load_in_4bit=config.load_in_4bit,
        dtype=None,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        use_gradient_checkpointing="unsloth",
        random_state=config.seed,
    )
    if config.answers_only:
        data = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    else:
        data = rows
    dataset = Dataset.from_list(data)

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.time()
            self.tokens = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            elapsed = time.time() - self.start
            total = max(state.max_steps, 1)
            remaining = elapsed / max(state.global_step, 1) * (total - state.global_step)
            seen = state.num_input_tokens_seen or 0
            emit("step", step=state.global_step, total=total, loss=logs["loss"],
                 lr=logs.get("learning_rate"), elapsed_s=elapsed, remaining_s=remaining,
                 tokens_per_s=seen / elapsed if elapsed > 0 else None)

    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        train_dataset=dataset,
        callbacks=[Progress()],
        args=SFTConfig(
            output_dir=str(out / "trainer"),
            per_device_train_batch_size=config.per_device_train_batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            learning_rate=config.learning_rate,
            num_train_epochs=config.num_train_epochs,
            max_steps=config.max_steps,
            warmup_steps=config.warmup_steps,
            max_length=config.max_length,
            logging_steps=1,
            save_strategy="no",
            report_to=config.report_to,
            seed=config.seed,
            include_num_input_tokens_seen="all",
            dataset_kwargs={},
        ),
    )
    emit("training", total=trainer.state.max_steps)
    result = trainer.train()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config.to_yaml(out / "train_config.yaml")
    metrics = {"train_loss": result.training_loss, "steps": result.global_step,
               "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    emit("done", **{k: v for k, v in metrics.items() if k != "losses"})
    events.close()
    return metrics
