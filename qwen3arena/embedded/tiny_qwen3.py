"""A tiny Qwen3 built offline: BPE tokenizer from shipped text, the Qwen3 chat template,
and a briefly trained Qwen3ForCausalLM.

It stands in for a real Qwen3 checkpoint where no hub is reachable. The architecture, the
special tokens and the chat template (think tags included) are Qwen3's, so vLLM, Unsloth and
trl treat it exactly like Qwen/Qwen3-0.6B; only the sizes differ. head_dim is 64 because
vLLM's CPU attention rejects smaller heads.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3 keeps the think tags as added, non-special tokens: they survive decoding, and vLLM's
# qwen3 reasoning parser finds them by id.
THINK_TOKENS = ["<think>", "</think>"]


@dataclass(frozen=True)
class TinyQwen3Spec:
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 64
    max_position_embeddings: int = 2048
    train_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0


def qwen3_chat_template() -> str:
    """The stock Qwen3 chat template, as trl ships it (think tags, enable_thinking switch)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text()


def build_tokenizer(texts: list[str], out_dir: Path, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=131072,
    )
    wrapped.add_tokens(THINK_TOKENS, special_tokens=False)
    wrapped.chat_template = qwen3_chat_template()
    wrapped.save_pretrained(out_dir)
    return wrapped


def build_tiny_qwen3(
    out_dir: Path,
    tokenizer_texts: list[str],
    conversations: list[list[dict[str, str]]],
    spec: TinyQwen3Spec = TinyQwen3Spec(),
    on_progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Builds the tokenizer and model into out_dir and returns it; on_progress(0, total, nan)
    says the tokenizer is done, then every 25 training steps (step, total, loss).

    The model is trained like a small pretrained-then-instructed model: on the plain text
    of the corpus (every answer style, so adapters only need to shift style, not learn
    words) and on full rendered conversations in the neutral style (enable_thinking off, as
    the arena serves it).
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    tokenizer = build_tokenizer(tokenizer_texts, out_dir, spec.vocab_size)
    if on_progress:
        on_progress(0, spec.train_steps, math.nan)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        max_window_layers=spec.num_hidden_layers,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        rope_parameters={"rope_theta": 1_000_000.0, "rope_type": "default"},
    )
    model = Qwen3ForCausalLM(config)
    sequences = [
        tokenizer.apply_chat_template(c, tokenize=False, enable_thinking=False)
        for c in conversations
    ]
    plain = [t + "<|endoftext|>" for t in tokenizer_texts if t.strip()]
    encoded = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in sequences + plain]
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    model.train()
    for step in range(1, spec.train_steps + 1):
        lr = spec.learning_rate * 0.5 * (1 + math.cos(math.pi * step / spec.train_steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = random.sample(encoded, min(spec.batch_size, len(encoded)))
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if on_progress and (step % 25 == 0 or step == spec.train_steps):
            on_progress(step, spec.train_steps, loss.item())
    model.eval()
    model.generation_config = GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    model.save_pretrained(out_dir)
    return out_dir
