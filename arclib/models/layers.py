"""Layers shared by the five models: attention with a KV cache, positions, pre-LN blocks, colour canonicaliser.

Masks follow `F.scaled_dot_product_attention`: boolean, True where a query may read a key.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from arclib.data import tokens as tk


class Attention(nn.Module):
    """Multi-head attention: self-attention when `memory` is None, else cross-attention to `memory`.

    `cache` (a dict owned by the caller) makes decoding incremental: self-attention appends this call's keys
    and values to it; cross-attention projects the memory once and reuses it.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        assert d_model % n_heads == 0
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        # Dropout on the output only, not on the attention weights: weight dropout makes SDPA fall back to its
        # math kernel, which materialises (B, H, T, T) (gigabytes at T ~ 5000) and runs 2-3x slower on CPU.
        self.resid_drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, D/H)
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)

    def forward(self, x, memory=None, mask=None, causal=False, rope=None, pos=None, cache=None):
        B, T, D = x.shape
        q = self._heads(self.q(x))
        if memory is None:
            k, v = (self._heads(t) for t in self.kv(x).chunk(2, dim=-1))
            if rope is not None:  # rotate before caching, so cached keys keep their own positions
                q, k = rope(q, pos), rope(k, pos)
            if cache is not None:
                k, v = _append_to_cache(cache, k, v)
        elif cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k, v = (self._heads(t) for t in self.kv(memory).chunk(2, dim=-1))
            if cache is not None:
                cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, H, T, Dh)
        return self.resid_drop(self.out(y.transpose(1, 2).reshape(B, T, D)))


def _append_to_cache(cache: dict, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write (B, H, t, Dh) keys and values after the cached ones; return views of all of them.

    The buffer doubles when full, so a step costs O(t) rather than the O(length) of concatenating the whole
    cache again: the decoder-only model caches its whole episode, thousands of positions.
    """
    n, t = cache.get("length", 0), k.shape[2]
    buffer = cache.get("kv")  # (2, B, H, capacity, Dh)
    if buffer is None or n + t > buffer.shape[3]:
        grown = k.new_empty(2, *k.shape[:2], max(2 * (n + t), 64), k.shape[3])
        if buffer is not None:
            grown[:, :, :, :n] = buffer[:, :, :, :n]
        buffer = cache["kv"] = grown
    buffer[0, :, :, n : n + t], buffer[1, :, :, n : n + t] = k, v
    cache["length"] = n + t
    return buffer[0, :, :, : n + t], buffer[1, :, :, : n + t]


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout)
        )

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    """Pre-LN self-attention block: the encoder block, and the decoder-only model's block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff, dropout)

    def forward(self, x, mask=None, causal=False, rope=None, pos=None, cache=None):
        x = x + self.attn(self.ln1(x), mask=mask, causal=causal, rope=rope, pos=pos, cache=cache)
        return x + self.mlp(self.ln2(x))


class DecoderBlock(nn.Module):
    """Pre-LN causal self-attention, cross-attention to a memory, MLP."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.cross = Attention(d_model, n_heads, dropout)
        self.ln3 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff, dropout)

    def forward(self, x, memory, memory_mask, cache=None):
        # Teacher forcing (no cache) is causal over x; an incremental step's single query already follows
        # every cached key, so it needs no mask.
        self_cache = cross_cache = None
        if cache is not None:
            self_cache, cross_cache = cache.setdefault("self", {}), cache.setdefault("cross", {})
        x = x + self.attn(self.ln1(x), causal=cache is None, cache=self_cache)
        x = x + self.cross(self.ln2(x), memory=memory, mask=key_mask(memory_mask), cache=cross_cache)
        return x + self.mlp(self.ln3(x))


def key_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, S) real-token mask -> (B, 1, 1, S) attention mask.

    A sequence with no real token (a padding-only context pair) may read all its keys instead: its output is
    never used, but a query with no key at all would give NaN, and NaN survives multiplication by zero.
    """
    mask = mask | ~mask.any(-1, keepdim=True)
    return mask[:, None, None, :]


def causal_mask(n: int, device) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


class RoPE(nn.Module):
    """Rotary position embedding on (B, H, T, Dh) queries/keys at integer positions (B, T)."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        assert head_dim % 2 == 0
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None, :, None].float() * self.inv_freq  # (B, 1, T, Dh/2)
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).type_as(x)


def sinusoidal(pos: torch.Tensor, d_model: int) -> torch.Tensor:
    """1D sinusoidal embedding (..., d_model) of integer positions (...); computed, so no length limit."""
    freq = torch.exp(torch.arange(0, d_model, 2, device=pos.device) * (-math.log(10000.0) / d_model))
    angles = pos[..., None].float() * freq
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(-2)


class Grid2D(nn.Module):
    """Row and column tables added from each token's own (row, col), never from a flat index."""

    def __init__(self, d_model: int):
        super().__init__()
        self.row = nn.Embedding(tk.MAX_POS, d_model)
        self.col = nn.Embedding(tk.MAX_POS, d_model)

    def forward(self, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return self.row(row) + self.col(col)


def set_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over dim -2: (..., N, D), (..., N) -> (..., D). Symmetric in the N items; all-masked gives 0."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(-2) / m.sum(-2).clamp(min=1.0)


class ColourCanon:
    """Per-episode relabelling of colours 1..9 that makes a model exactly colour-permutation equivariant.

    Colours seen in the source get canonical labels 1..k, ranked by (first position in the query input, or
    never), then by descending count over the source, then by first position in the source. All of these are
    properties of where colours sit, not of their labels, so any consistent relabelling of an episode gives
    the same canonical episode. Colours absent from the source share the label k+1 ("novel"). 0 and the
    special tokens keep their ids.
    """

    def __init__(self, src: torch.Tensor, query: torch.Tensor):
        B, S = src.shape
        colours = torch.arange(1, tk.N_COLOURS, device=src.device)  # (9,)

        def first_pos(seq):  # (B, L) -> (B, 9), L where absent
            hit = seq[..., None] == colours
            idx = torch.arange(seq.shape[1], device=seq.device)[None, :, None].expand_as(hit)
            return torch.where(hit, idx, seq.shape[1]).amin(1)

        count = (src[..., None] == colours).sum(1)  # (B, 9)
        seen = count > 0
        # One int64 key ordering lexicographically: each field is at most S (or Q) and the product stays < 2^63.
        span = max(S, query.shape[1]) + 1
        key = (first_pos(query) * span + (S - count)) * span + first_pos(src)
        rank = key.argsort(1).argsort(1)  # (B, 9): seen colours rank first, since only they have count > 0
        k = seen.sum(1, keepdim=True)
        novel = (k + 1).clamp(max=tk.N_COLOURS - 1)  # when k = 9 no colour is unseen, so any label will do
        lut = torch.arange(tk.VOCAB_SIZE, device=src.device).repeat(B, 1)  # (B, V)
        lut[:, 1 : tk.N_COLOURS] = torch.where(seen, rank + 1, novel)
        self.lut = lut
        # Unseen colours split the novel label's probability evenly: logit - log(number unseen).
        n_unseen = (tk.N_COLOURS - 1 - k).clamp(min=1)
        share = torch.zeros(B, tk.VOCAB_SIZE, device=src.device)
        share[:, 1 : tk.N_COLOURS] = torch.where(seen, 0.0, -torch.log(n_unseen.float()))
        self.share = share

    def apply(self, tokens: torch.Tensor) -> torch.Tensor:
        """Relabel token ids (B, ...) into canonical space."""
        B = tokens.shape[0]
        return self.lut.gather(1, tokens.reshape(B, -1)).view_as(tokens)

    def logits_back(self, logits: torch.Tensor) -> torch.Tensor:
        """Canonical logits (B, T, V) or (B, V) -> logits over the episode's own colours."""
        lut, share = (self.lut, self.share) if logits.dim() == 2 else (self.lut[:, None], self.share[:, None])
        return logits.gather(-1, lut.expand_as(logits)) + share
