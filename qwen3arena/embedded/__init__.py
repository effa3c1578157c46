"""The embedded default: a tiny Qwen3 and two LoRA adapters, built offline on first start.

Building is idempotent: a recipe hash (shipped data + sizes + training arguments) is written
next to the models, and a build whose hash matches is reused. A file lock keeps two
processes (the app and a test run, say) from building into the same directory at once.
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
from typing import Callable

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


@dataclass(frozen=True)
class EmbeddedModels:
    base_dir: Path
    adapters: dict[str, Path]


def _recipe_hash(spec: TinyQwen3Spec) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([BUILD_VERSION, dataclasses.asdict(spec), ADAPTER_TRAINING]).encode())
    for path in [DATA_DIR / "corpus" / "kitchen.txt", DATA_DIR / "sft" / "kitchen_neutral.jsonl",
                 *ADAPTERS.values()]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_embedded_models(
    models_dir: Path,
    on_progress: Callable[[str], None] = log.info,
    spec: TinyQwen3Spec = TinyQwen3Spec(),
) -> EmbeddedModels:
    """Returns the embedded base and adapters, building whatever is missing or stale."""
    root = models_dir / "embedded"
    root.mkdir(parents=True, exist_ok=True)
    result = EmbeddedModels(root / "base", {n: root / "adapters" / n for n in ADAPTERS})
    recipe = _recipe_hash(spec)
    marker = root / "BUILD.json"
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and json.loads(marker.read_text()).get("recipe") == recipe:
            return result
        on_progress("Building the embedded tiny Qwen3 (first start only, about a minute)...")
        marker.unlink(missing_ok=True)
        shutil.rmtree(result.base_dir, ignore_errors=True)
        texts = (DATA_DIR / "corpus" / "kitchen.txt").read_text().splitlines()
        conversations = [row["messages"] for row in load_conversations(DATA_DIR / "sft" / "kitchen_neutral.jsonl")]
        build_tiny_qwen3(
            result.base_dir, texts, conversations, spec,
            lambda step, total, loss: on_progress(f"base model: step {step}/{total}, loss {loss:.3f}"),
        )
        from qwen3arena.train import LoraTrainConfig, run_training_subprocess

        for name, dataset in ADAPTERS.items():
            out = result.adapters[name]
            shutil.rmtree(out, ignore_errors=True)
            config = LoraTrainConfig(name=name, base_model=str(result.base_dir),
                                     dataset=str(dataset), output_dir=str(out), **ADAPTER_TRAINING)

            def report(event: dict, name: str = name) -> None:
                if event.get("event") == "step" and event["step"] % 20 == 0:
                    on_progress(f"adapter {name}: step {event['step']}/{event['total']}, "
                                f"loss {event['loss']:.3f}")

            on_progress(f"Training LoRA adapter {name} with Unsloth on {dataset.name}...")
            run_training_subprocess(config, on_event=report, env={"HF_HUB_OFFLINE": "1"})
            shutil.rmtree(out / "trainer", ignore_errors=True)
        marker.write_text(json.dumps({"recipe": recipe, "adapters": list(ADAPTERS)}))
        on_progress("Embedded models ready.")
    return result
