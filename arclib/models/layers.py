"""Layers shared by the five models: attention with a KV cache, positions, pre-LN blocks, colour canonicaliser.

Masks follow `F.scaled_dot_product_attention`: boolean, True where a query may read a key.
"""

from __future__ import annotations

import copy
import math
from functools import cached_property

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from arclib.data import tokens as tk

# Every SDPA backend but cuDNN's: it builds a plan for each new (batch, length) shape, and length-bucketed
# batches and token-by-token generation keep making new ones, which made GPU training and generation several
# times slower (README, On a GPU). On the CPU the context only sets flags.
ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


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
        self.resid_drop = Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, D/H)
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)

    def forward(self, x, memory=None, mask=None, causal=False, rope=None, pos=None, cache=None, rows=None):
        """`rows` (B, T'): self-attention outputs at those positions of x only, each reading keys up to its own
        position when `causal`. `mask` is a boolean attention mask, or `Segments` (attention within runs)."""
        B, _, D = x.shape
        q = self._heads(self.q(x if rows is None else gather_rows(x, rows)))
        if memory is None:
            k, v = (self._heads(t) for t in self.kv(x).chunk(2, dim=-1))
            if rope is not None:  # rotate before caching, so cached keys keep their own positions
                q, k = rope(q, pos if rows is None else pos.gather(1, rows)), rope(k, pos)
            if rows is not None and causal:  # is_causal would align these rows with the first T' keys
                assert mask is None and cache is None
                keys = torch.arange(x.shape[1], device=x.device)
                mask, causal = (keys <= rows[..., None]).unsqueeze(1), False  # (B, 1, T', T)
            if cache is not None:
                k, v = _append_to_cache(cache, k, v)
        elif cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k, v = (self._heads(t) for t in self.kv(memory).chunk(2, dim=-1))
            if cache is not None:  # read at every step: contiguous heads decode faster than strided views
                cache["k"], cache["v"] = k.contiguous(), v.contiguous()
        if isinstance(mask, Segments):
            y = mask.attend(q, k, v)
        else:
            y = sdpa(q, k, v, mask, causal)  # (B, H, T or T', Dh)
        return self.resid_drop(self.out(y.transpose(1, 2).reshape(B, -1, D)))


def sdpa(q, k, v, mask=None, causal=False) -> torch.Tensor:
    with sdpa_kernel(ATTENTION_BACKENDS):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


class Segments:
    """Self-attention within segments: the runs of equal `ids` (B, S) among each sample's real tokens (`real`,
    packed left, padding after). A token reads only the keys of its own run.

    On the CPU each run is one attention call. One call with the block-diagonal mask gives the same outputs at
    real tokens, but the CPU kernel computes every (query, key) pair the mask excludes as well: three times the
    useful work in the champion's encoder, whose training step took 15% less time per segment (README,
    Performance). A GPU keeps the one masked call, one kernel instead of B x runs small ones (not timed there).
    """

    def __init__(self, ids: torch.Tensor, real: torch.Tensor):
        self.ids, self.real = ids, real

    @cached_property
    def mask(self) -> torch.Tensor:  # (B, 1, S, S); padding reads every key (its output is never used)
        same = self.ids[:, :, None] == self.ids[:, None, :]
        return (same | ~self.real[:, :, None])[:, None]

    @cached_property
    def lengths(self) -> list[list[int]]:  # each sample's run lengths, in order
        return [
            torch.unique_consecutive(i[r], return_counts=True)[1].tolist()
            for i, r in zip(self.ids, self.real)
        ]

    def attend(self, q, k, v) -> torch.Tensor:  # (B, H, S, Dh) each -> (B, H, S, Dh), zeros at padding
        assert q.shape[2] == k.shape[2] == self.ids.shape[1], "self-attention over every position only"
        if q.device.type != "cpu":
            return sdpa(q, k, v, self.mask)
        samples = []
        for b, lengths in enumerate(self.lengths):
            runs, start = [], 0
            for n in lengths:
                run = slice(start, start + n)
                runs.append(sdpa(q[b : b + 1, :, run], k[b : b + 1, :, run], v[b : b + 1, :, run]))
                start += n
            runs.append(q.new_zeros(1, q.shape[1], q.shape[2] - start, v.shape[3]))
            samples.append(torch.cat(runs, 2))
        return torch.cat(samples)


class Dropout(nn.Module):
    """`nn.Dropout` with its mask drawn by `rand` on the CPU: there `bernoulli_` made dropout (forward and
    backward) 2.2x as slow, and a training step 3-4% slower (README, Performance). The same distribution (the
    uniforms are float32 whatever x's dtype), and masks are a function of the RNG state, so runs stay
    deterministic and resume exactly. Other devices keep their fused kernel."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * (keep * (1 / (1 - self.p))).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T') -> (B, T', D): each sample's positions `rows`."""
    return x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))


def _append_to_cache(cache: dict, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write (B, H, t, Dh) keys and values after the cached ones; return views of all of them.

    The buffer doubles when full, so a step costs O(t) rather than the O(length) of concatenating the whole
    cache again: the decoder-only model caches its whole episode, thousands of positions.
    """
    n, t = cache.get("length", 0), k.shape[2]
    buffer = cache.get("kv")  # (B, 2, H, capacity, Dh): batch first, like every tensor of a generation state
    if buffer is None or n + t > buffer.shape[3]:
        grown = k.new_empty(k.shape[0], 2, k.shape[1], max(2 * (n + t), 64), k.shape[3])
        if buffer is not None:
            grown[..., :n, :] = buffer[..., :n, :]
        buffer = cache["kv"] = grown
    buffer[:, 0, :, n : n + t], buffer[:, 1, :, n : n + t] = k, v
    cache["length"] = n + t
    return buffer[:, 0, :, : n + t], buffer[:, 1, :, : n + t]


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), Dropout(dropout)
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

    def forward(self, x, mask=None, causal=False, rope=None, pos=None, cache=None, rows=None):
        """`rows` (B, T'): the outputs at those positions only (B, T', D); every position is still read."""
        h = self.attn(self.ln1(x), mask=mask, causal=causal, rope=rope, pos=pos, cache=cache, rows=rows)
        x = (x if rows is None else gather_rows(x, rows)) + h
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


QUERY, PADDING = -2, -1  # segment ids besides the context pairs' 0..P-1
# A fixed random 40-bit weight per rank 1..9: a pair's colours sum to a hash of the ranks it holds (< 2^44).
_RANK_HASH = torch.randint(0, 2**40, (tk.N_COLOURS,), generator=torch.Generator().manual_seed(0))


def pair_segments(src: torch.Tensor, role: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, S) -> segment id of each source token: its context pair's index 0..P-1, QUERY for the query input,
    PADDING for padding. Each context pair starts with the SEP_IN of its input grid."""
    starts = (src == tk.SEP_IN) & (role == tk.ROLE_CTX_IN)
    pair = starts.long().cumsum(1) - 1
    return torch.where(role == tk.ROLE_QUERY_IN, QUERY, pair).masked_fill(~mask, PADDING)


def colour_groups(batch: tk.Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(first canonical label (B, 9), same group (B, 9, 9)) of colours 1..9, from the source alone.

    Colours are ordered by a key that depends neither on colour labels nor on the order of the context pairs:
    first position in the query input (absent last), then count over the source (most first), then the
    per-pair statistics (counts in the pair's input and output grid, most first, and first (row, col) in each)
    as a sorted multiset over pairs; then, to part colours that play the same part in different pairs, the
    sorted multiset over pairs of the ranks of the other colours each pair holds. Colours with equal keys form
    a group that shares a label range; colours absent from the source always form one group, the last.
    Ranking by anything that depends on pair order (such as first position in the packed source) would make
    the champion see different labels when only the order of its demonstrations changed.
    """
    B, device = len(batch), batch.src.device
    segment = pair_segments(batch.src, batch.src_role, batch.src_mask)
    n_pairs = int(segment.max()) + 1
    # One slot per context grid (2 per pair), then the query input, then a slot for tokens that are not colours.
    slot = torch.where(segment >= 0, 2 * segment + (batch.src_role == tk.ROLE_CTX_OUT), 2 * n_pairs)
    colour = batch.src - 1  # 0..8 for colours 1..9
    is_colour = (colour >= 0) & (colour < tk.N_COLOURS - 1) & batch.src_mask
    n_slots = 2 * n_pairs + 2
    index = torch.where(is_colour, slot * 9 + colour, (n_slots - 1) * 9)  # (B, S)
    count = torch.zeros(B, n_slots * 9, dtype=torch.long, device=device).scatter_add_(
        1, index, torch.ones_like(index)
    )
    absent = tk.MAX_POS * tk.MAX_POS
    first = torch.full((B, n_slots * 9), absent, dtype=torch.long, device=device).scatter_reduce_(
        1, index, batch.src_row * tk.MAX_POS + batch.src_col, "amin"
    )
    count, first = count.view(B, n_slots, 9)[:, :-1], first.view(B, n_slots, 9)[:, :-1]  # (B, 2P + 1, 9)
    # Per pair: (input count, output count) most first, then (input, output) first position; every field < 1024.
    c_in, c_out, f_in, f_out = count[:, 0:-1:2], count[:, 1:-1:2], first[:, 0:-1:2], first[:, 1:-1:2]
    pair_key = (((1023 - c_in) * 1024 + (1023 - c_out)) * 1024 + f_in) * 1024 + f_out  # (B, P, 9)
    key = torch.cat([first[:, -1:], -count.sum(1, keepdim=True), pair_key.sort(1).values], 1)  # (B, L, 9)
    rank = _ranks(key)
    # One refinement step: per pair, a hash of the ranks of the colours it holds besides this one (-1 if absent).
    held = (c_in + c_out) > 0  # (B, P, 9)
    rank_hash = _RANK_HASH.to(device)[rank][:, None, :] * held  # (B, P, 9)
    others = torch.where(held, rank_hash.sum(-1, keepdim=True) - rank_hash, -1)
    rank = _ranks(torch.cat([rank[:, None, :], others.sort(1).values], 1))
    same = rank[:, :, None] == rank[:, None, :]
    return rank, same


def _ranks(key: torch.Tensor) -> torch.Tensor:
    """(B, L, 9) keys -> (B, 9) 1 + the number of colours whose key is lexicographically smaller."""
    diff = (key[:, :, :, None] - key[:, :, None, :]).sign()  # (B, L, 9, 9): the sign of each difference
    first_diff = diff.gather(1, (diff != 0).long().argmax(1, keepdim=True)).squeeze(1)  # (B, 9, 9)
    return (first_diff < 0).sum(1) + 1


class ColourCanon:
    """Per-episode relabelling of colours 1..9 that makes a model exactly colour-permutation equivariant.

    `colour_groups` orders the colours by a label-free key. In the source, every colour of a group gets the
    group's first label (a colour with a key of its own, the usual case, gets a label of its own). In the
    target, the members of a group get the group's labels in their order of first appearance there: causal and
    label-free, so a colour absent from the source is written under its own label once it has appeared. Until
    then, the probability of the group's next label is shared evenly among its members not yet written. 0 and
    the special tokens keep their ids. No tie is ever broken by a colour's label or by where its pair sits, so
    relabelling an episode's colours, or reordering its pairs, gives exactly the same canonical labels.
    """

    def __init__(self, batch: tk.Batch):
        self.start, self.same = colour_groups(batch)  # (B, 9), (B, 9, 9)

    def select_rows(self, keep: torch.Tensor) -> ColourCanon:
        canon = copy.copy(self)
        canon.start, canon.same = self.start[keep], self.same[keep]
        return canon

    def source(self, tokens: torch.Tensor) -> torch.Tensor:
        """Canonical source tokens (B, S)."""
        return self._relabel(tokens, self.start)

    def _target_labels(self, tgt_in: torch.Tensor):
        """First appearance (B, 9) of each colour in tgt_in (T if never), and the label it is written with."""
        T = tgt_in.shape[1]
        hit = tgt_in[:, :, None] == torch.arange(1, tk.N_COLOURS, device=tgt_in.device)  # (B, T, 9)
        idx = torch.arange(T, device=tgt_in.device)[None, :, None]
        first = torch.where(hit, idx, T).amin(1)
        earlier_in_group = self.same & (first[:, :, None] < first[:, None, :])  # [b, j, c]: j before c
        return first, self.start + earlier_in_group.sum(1)

    def target(self, tgt_in: torch.Tensor) -> torch.Tensor:
        """Canonical decoder input (B, T)."""
        return self._relabel(tgt_in, self._target_labels(tgt_in)[1])

    def logits_back(self, logits: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Canonical logits (B, T, V) at every position of tgt_in (B, T), or (B, V) after its last token only
        -> logits over the episode's own colours."""
        first, written = self._target_labels(tgt_in)
        T = tgt_in.shape[1]
        pos = torch.arange(0 if logits.dim() == 3 else T - 1, T, device=tgt_in.device)
        appeared = first[:, None, :] <= pos[None, :, None]  # (B, T', 9)
        n_written = (appeared[:, :, :, None] & self.same[:, None]).sum(2)  # (B, T', 9): group members written
        n_unwritten = self.same.sum(1)[:, None, :] - n_written
        label = torch.where(appeared, written[:, None, :], self.start[:, None, :] + n_written)
        share = torch.where(appeared, 0.0, -n_unwritten.clamp(min=1).float().log())
        lut = torch.arange(tk.VOCAB_SIZE, device=logits.device).repeat(*label.shape[:2], 1)  # (B, T', V)
        lut[..., 1 : tk.N_COLOURS] = label
        offset = torch.zeros(lut.shape, device=logits.device)
        offset[..., 1 : tk.N_COLOURS] = share
        if logits.dim() == 2:
            lut, offset = lut[:, 0], offset[:, 0]
        return logits.gather(-1, lut) + offset

    @staticmethod
    def _relabel(tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lut = torch.arange(tk.VOCAB_SIZE, device=tokens.device).repeat(len(tokens), 1)  # (B, V)
        lut[:, 1 : tk.N_COLOURS] = labels
        return lut.gather(1, tokens)
