"""The bench's FLOP count: attention on CPU is counted, and only where the mask lets a query read a key."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from arclib.bench import attention_flops  # importing arclib.bench registers the CPU attention formulas

B, H, T, D = 2, 4, 12, 8
DENSE = 4 * B * H * T * T * D  # Q @ K^T and scores @ V


def counted(t_k: int = T, **sdpa_kwargs) -> tuple[int, int]:
    """(forward FLOPs, forward + backward FLOPs) FlopCounterMode counts for one CPU attention call."""
    q = torch.randn(B, H, T, D, requires_grad=True)
    kv = torch.randn(B, H, t_k, D, requires_grad=True)
    with FlopCounterMode(display=False) as forward:
        out = F.scaled_dot_product_attention(q, kv, kv, **sdpa_kwargs)
    with FlopCounterMode(display=False) as both:
        F.scaled_dot_product_attention(q, kv, kv, **sdpa_kwargs).sum().backward()
    assert out.isfinite().all()
    return forward.get_total_flops(), both.get_total_flops()


def test_dense_attention_counts_both_matmuls_and_twice_that_backward():
    assert counted() == (DENSE, 3 * DENSE)


def test_without_the_formulas_cpu_attention_counts_nothing(monkeypatch):
    """The negative control: what FlopCounterMode reported before bench registered its formulas."""
    aten = torch.ops.aten
    monkeypatch.delitem(flop_registry, aten._scaled_dot_product_flash_attention_for_cpu)
    monkeypatch.delitem(flop_registry, aten._scaled_dot_product_flash_attention_for_cpu_backward)
    assert counted() == (0, 0)


@pytest.mark.parametrize(
    "kwargs, pairs",
    [
        ({"is_causal": True}, T * (T + 1) // 2),
        # more keys than queries: query i reads keys 0..i, as the mask SDPA builds for is_causal (top-left)
        ({"is_causal": True, "t_k": 20}, T * (T + 1) // 2),
        ({"attn_mask": torch.ones(T, T, dtype=torch.bool).tril()}, T * (T + 1) // 2),
        # a block-diagonal mask (the champion's encoder on a GPU): two blocks of 5 and 7 tokens
        ({"attn_mask": torch.block_diag(torch.ones(5, 5), torch.ones(7, 7)).bool()}, 25 + 49),
        # padding: each query reads the first 9 keys only
        ({"attn_mask": (torch.arange(T) < 9).expand(T, T)}, T * 9),
    ],
)
def test_masked_scores_are_not_counted(kwargs, pairs):
    forward, both = counted(**kwargs)
    assert forward == 4 * B * H * pairs * D
    assert both == 3 * forward


def test_a_float_mask_counts_its_finite_entries():
    mask = torch.zeros(B, 1, T, T).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    q = torch.randn(B, H, T, D)
    assert attention_flops(q, q, attn_mask=mask) == 4 * B * H * (T * (T + 1) // 2) * D
