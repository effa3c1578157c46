"""The embedded default: a tiny Qwen3 and two LoRA adapters, built offline on first start.

Building is idempotent: a recipe hash (shipped data + sizes + training arguments) is written
next to the models, and a build whose hash matches is reused. Each finished part (the base,
each adapter) is recorded as it finishes, so a start interrupted half-way resumes where it
stopped. A file lock keeps two processes (the app and a test run, say) from building into the
same directory at once. Each part is handed to the caller as soon as it exists (on_base,
on_adapter): the app starts vLLM on the base while the adapters still train.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from qwen3arena.config import REPO_ROOT
from qwen3arena.embedded.tiny_qwen3 import TinyQwen3Spec, build_tiny_qwen3
from qwen3arena.train.data import load_conversations

log = logging.getLogger(__name__)

DATA_DIR = REPO_ROOT / "data"
BUILD_VERSION = 1
# adapter name -> shipped dataset it is trained on
ADAPTERS = {
    "tiny-qwen3-concise": DATA_DIR / "sft" / "kitchen_concise.jsonl",
    "tiny-qwen3-chatty": DATA_DIR / "sft" / "kitchen_chatty.jsonl",
}
ADAPTER_TRAINING = {
    "max_steps": 150, "learning_rate": 3e-3, "per_device_train_batch_size": 16,
    "max_length": 256, "rank": 16, "alpha": 32, "seed": 0,
}


# the build's steps in order, as start-up lists them (adapters numbered, never named)
BUILD_STEPS: dict[str, str] = {
    "tokenizer": "building tokenizer",
    "base": "training base model",
    **{f"adapter-{i}": f"training adapter {i}/{len(ADAPTERS)}" for i in range(1, len(ADAPTERS) + 1)},
}


@dataclass(frozen=True)
class EmbeddedModels:
    base_dir: Path
    adapters: dict[str, Path]


@dataclass(frozen=True)
class BuildStep:
    """How far one part of the build has got, for the start-up page. It names no adapter (the
    arena shows it before any vote): adapters are numbered."""

    key: str                 # "tokenizer", "base", "adapter-1", "adapter-2"
    label: str               # "building tokenizer", "training base model", "training adapter 1/2"
    state: Literal["running", "done", "reused"]
    step: int = 0
    total: int = 0


def _recipe_hash(spec: TinyQwen3Spec) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([BUILD_VERSION, dataclasses.asdict(spec), ADAPTER_TRAINING]).encode())
    for path in [DATA_DIR / "corpus" / "kitchen.txt", DATA_DIR / "sft" / "kitchen_neutral.jsonl",
                 *ADAPTERS.values()]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _built_parts(marker: Path, recipe: str) -> set[str]:
    """The parts of this recipe already built: all of them ("recipe", the format before parts
    were recorded), or those listed beside "partial_recipe" (an interrupted build)."""
    try:
        data = json.loads(marker.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return set()
    if data.get("recipe") == recipe:
        return {"base", *ADAPTERS}
    if data.get("partial_recipe") == recipe:
        return set(data.get("parts", []))
    return set()


def _note_parts(marker: Path, recipe: str, parts: set[str]) -> None:
    # "recipe" only once every part exists: an older app reading the file then rebuilds a partial build
    complete = parts >= {"base", *ADAPTERS}
    data = {"recipe": recipe, "adapters": list(ADAPTERS)} if complete else \
        {"partial_recipe": recipe, "parts": sorted(parts)}
    marker.write_text(json.dumps(data))


def ensure_embedded_models(
    models_dir: Path,
    on_progress: Callable[[str], None] = log.info,
    spec: TinyQwen3Spec = TinyQwen3Spec(),
    on_step: Callable[[BuildStep], None] | None = None,
    on_base: Callable[[Path], None] | None = None,
    on_adapter: Callable[[str, Path], None] | None = None,
) -> EmbeddedModels:
    """Returns the embedded base and adapters, building whatever is missing or stale.

    on_progress gets log lines; on_step how far each part has got; on_base and on_adapter each
    part as soon as it is usable (before the rest is built), so serving need not wait for all."""
    root = models_dir / "embedded"
    root.mkdir(parents=True, exist_ok=True)
    result = EmbeddedModels(root / "base", {n: root / "adapters" / n for n in ADAPTERS})
    recipe = _recipe_hash(spec)
    marker = root / "BUILD.json"
    step = on_step or (lambda _: None)
    adapter_keys = {name: (f"adapter-{i}", BUILD_STEPS[f"adapter-{i}"]) for i, name in enumerate(ADAPTERS, 1)}
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        parts = _built_parts(marker, recipe)
        if "base" in parts:
            step(BuildStep("tokenizer", BUILD_STEPS["tokenizer"], "reused"))
            step(BuildStep("base", BUILD_STEPS["base"], "reused"))
        else:
            parts = set()
            on_progress("Building the embedded tiny Qwen3 (first start only, a few minutes on a CPU)...")
            marker.unlink(missing_ok=True)
            shutil.rmtree(result.base_dir, ignore_errors=True)
            texts = (DATA_DIR / "corpus" / "kitchen.txt").read_text().splitlines()
            conversations = [row["messages"] for row in load_conversations(DATA_DIR / "sft" / "kitchen_neutral.jsonl")]
            step(BuildStep("tokenizer", BUILD_STEPS["tokenizer"], "running"))

            def base_progress(done: int, total: int, loss: float) -> None:
                if done == 0:  # the tokenizer is built; training starts
                    step(BuildStep("tokenizer", BUILD_STEPS["tokenizer"], "done"))
                else:
                    on_progress(f"base model: step {done}/{total}, loss {loss:.3f}")
                step(BuildStep("base", BUILD_STEPS["base"], "running", done, total))

            build_tiny_qwen3(result.base_dir, texts, conversations, spec, base_progress)
            step(BuildStep("base", BUILD_STEPS["base"], "done", spec.train_steps, spec.train_steps))
            parts.add("base")
            _note_parts(marker, recipe, parts)
        if on_base:
            on_base(result.base_dir)
        for name, dataset in ADAPTERS.items():
            key, label = adapter_keys[name]
            out = result.adapters[name]
            if name in parts:
                step(BuildStep(key, label, "reused"))
            else:
                _train_adapter(name, dataset, result.base_dir, out, key, label, on_progress, step)
                parts.add(name)
                _note_parts(marker, recipe, parts)
            if on_adapter:
                on_adapter(name, out)
        on_progress("Embedded models ready.")
    return result


def _train_adapter(name: str, dataset: Path, base_dir: Path, out: Path, key: str, label: str,
                   on_progress: Callable[[str], None], step: Callable[[BuildStep], None]) -> None:
    """One adapter, trained with Unsloth in a child process (as every training run is)."""
    from qwen3arena.train import LoraTrainConfig, run_training_subprocess

    shutil.rmtree(out, ignore_errors=True)
    config = LoraTrainConfig(name=name, base_model=str(base_dir), dataset=str(dataset), output_dir=str(out),
                             **ADAPTER_TRAINING)
    total = ADAPTER_TRAINING["max_steps"]
    step(BuildStep(key, label, "running", 0, total))

    def report(event: dict) -> None:
        if event.get("event") == "step":
            step(BuildStep(key, label, "running", event["step"], event["total"]))
            if event["step"] % 20 == 0:
                on_progress(f"adapter {name}: step {event['step']}/{event['total']}, loss {event['loss']:.3f}")

    on_progress(f"Training LoRA adapter {name} with Unsloth on {dataset.name}...")
    run_training_subprocess(config, on_event=report, env={"HF_HUB_OFFLINE": "1"})
    shutil.rmtree(out / "trainer", ignore_errors=True)
    step(BuildStep(key, label, "done", total, total))
