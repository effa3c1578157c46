"""The GPU varlen attention backport, checked on the CPU: packed batches must see exactly
per-conversation causal attention, and Unsloth must accept the backported kernel (it checks
the signature)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from qwen3arena.train.attention import backport_varlen_gqa, needs_gqa_backport, with_gqa_flag


def torch_2_11_varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
                           scale=None, window_size=(-1, -1)):
    """torch 2.11's signature; an MHA kernel: key/value must have the query's head count."""
    assert key.shape[-2] == query.shape[-2], "this kernel takes as many key/value heads as query heads"
    assert window_size == (-1, 0) and return_aux is None
    bounds = cu_seq_q.tolist()
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = (t[start:end].transpose(0, 1) for t in (query, key, value))
        outs.append(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale).transpose(0, 1))
    return torch.cat(outs)


def packed_gqa_batch(lengths=(5, 1, 9, 3), heads=4, kv_heads=2, dim=8):
    torch.manual_seed(0)
    total = sum(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(total, heads, dim, requires_grad=True)
    k = torch.randn(total, kv_heads, dim, requires_grad=True)
    v = torch.randn(total, kv_heads, dim, requires_grad=True)
    return q, k, v, cu, max(lengths)


def test_the_backport_computes_grouped_query_attention_per_conversation():
    q, k, v, cu, longest = packed_gqa_batch()
    out = with_gqa_flag(torch_2_11_varlen_attn)(q, k, v, cu, cu, longest, longest, scale=0.3,
                                                window_size=(-1, 0), enable_gqa=True)
    # reference: each conversation on its own, query heads sharing key/value heads in groups
    bounds = cu.tolist()
    expected = torch.cat([
        F.scaled_dot_product_attention(q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1),
                                       is_causal=True, scale=0.3, enable_gqa=True).transpose(0, 1)
        for a, b in zip(bounds[:-1], bounds[1:])])
    torch.testing.assert_close(out, expected)
    # gradients reach the unexpanded key/value heads
    out.sum().backward()
    assert k.grad.shape == k.shape and v.grad.abs().sum() > 0


def test_without_the_flag_key_value_heads_are_passed_as_they_are():
    q, k, v, cu, longest = packed_gqa_batch(kv_heads=4)
    out = with_gqa_flag(torch_2_11_varlen_attn)(q, k, v, cu, cu, longest, longest, window_size=(-1, 0))
    torch.testing.assert_close(out, torch_2_11_varlen_attn(q, k, v, cu, cu, longest, longest, window_size=(-1, 0)))


def test_only_torch_2_11s_signature_needs_the_backport():
    assert needs_gqa_backport(torch_2_11_varlen_attn)
    assert not needs_gqa_backport(with_gqa_flag(torch_2_11_varlen_attn))
    assert not needs_gqa_backport(lambda q, k, v, cu_q, cu_k, max_q, max_k: None)  # torch 2.10: no window


def test_on_a_cpu_nothing_is_patched():
    from torch.nn.attention import varlen

    before = varlen.varlen_attn
    assert backport_varlen_gqa() is False
    assert varlen.varlen_attn is before


@pytest.mark.slow  # starts Unsloth, vLLM or EvalScope
def test_unsloth_takes_the_backported_kernel(tmp_path):
    """Unsloth reads the kernel once at import; with the backport in place it must pick it up
    (a wrapper whose signature still looked like torch 2.11's was silently ignored once)."""
    script = textwrap.dedent("""
        import torch
        from torch.nn.attention import varlen
        from tests.test_train_kernels import torch_2_11_varlen_attn
        from qwen3arena.train.attention import with_gqa_flag
        varlen.varlen_attn = with_gqa_flag(torch_2_11_varlen_attn)
        torch.backends.cuda.is_flash_attention_available = lambda: True
        from qwen3arena.train.isolation import import_unsloth
        import_unsloth()
        import unsloth.models  # noqa: F401  (on a CPU unsloth defers its model code)
        from unsloth.utils import attention_dispatch
        print("TAKEN", attention_dispatch._TORCH_VARLEN_ATTN is varlen.varlen_attn)
    """)
    repo = Path(__file__).resolve().parents[1]
    # run elsewhere: Unsloth writes its compiled cache into the working directory
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "UNSLOTH_SKIP_TORCHVISION_CHECK": "1",
                                               "PYTHONPATH": str(repo)})
    assert "TAKEN True" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
