"""Attention kernels for packed batches on the GPU.

Packed (and padding-free) batches hold several conversations in one row; attention must not
cross from one into the next. Unsloth does that with one flash "varlen" kernel call per layer
when torch offers ``torch.nn.attention.varlen.varlen_attn`` with ``window_size`` (torch 2.11)
and ``enable_gqa`` (torch 2.12); without them it runs SDPA once per conversation in every
layer. On an H100 with torch 2.11 that made a packed step of 8k tokens cost 2-4x a
fixed-length one: packing reached 0.32x of a bare Unsloth loop's tokens/s, and 0.68-0.87x
once the kernel was used (docs/benchmarks.md).

torch 2.11's kernel lacks only the ``enable_gqa`` flag: Qwen3 has fewer key/value heads than
query heads, and the flag asks for them to be shared across query-head groups. Expanding the
key/value heads before the call computes exactly that, so the backport adds the flag.
"""

from __future__ import annotations

from typing import Any, Callable

VarlenAttn = Callable[..., Any]


def with_gqa_flag(original: VarlenAttn) -> VarlenAttn:
    """torch 2.11's varlen_attn with torch 2.12's signature (Unsloth inspects it, so every
    keyword is spelled out and no ``__wrapped__`` points back at the old signature)."""

    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                    window_size=(-1, -1), enable_gqa=False):
        # tensors are (tokens, heads, head_dim)
        if enable_gqa and key.shape[-2] != query.shape[-2]:
            groups = query.shape[-2] // key.shape[-2]
            key = key.repeat_interleave(groups, dim=-2)
            value = value.repeat_interleave(groups, dim=-2)
        return original(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, return_aux=return_aux,
                        scale=scale, window_size=window_size)

    varlen_attn.__doc__ = original.__doc__
    return varlen_attn


def needs_gqa_backport(varlen_attn: VarlenAttn) -> bool:
    """True for torch 2.11's varlen_attn: it has window_size but no enable_gqa."""
    import inspect

    params = inspect.signature(varlen_attn).parameters
    return "window_size" in params and "enable_gqa" not in params


def backport_varlen_gqa() -> bool:
    """Installs the backport when torch needs it and a CUDA GPU is there; must run before
    Unsloth is imported (it reads the signature once). Returns whether it was installed."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        from torch.nn.attention import varlen
    except ImportError:  # torch < 2.10: Unsloth keeps its per-conversation path
        return False
    if not needs_gqa_backport(varlen.varlen_attn):
        return False
    varlen.varlen_attn = with_gqa_flag(varlen.varlen_attn)
    return True
