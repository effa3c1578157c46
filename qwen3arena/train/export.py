"""Merged 16-bit export of a LoRA checkpoint, for serving elsewhere (vLLM, Ollama, TGI)."""

from __future__ import annotations

from pathlib import Path

from qwen3arena.train.isolation import import_unsloth


def export_merged(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Base weights + adapter merged into one 16-bit model directory (with its tokenizer)."""
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json)")
    FastLanguageModel = import_unsloth().FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(adapter_dir), load_in_4bit=False)
    model.save_pretrained_merged(str(out_dir), tokenizer, save_method="merged_16bit")
    return out_dir
