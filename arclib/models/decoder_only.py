"""Exp -1: one causal transformer over the source followed by the target, with rotary positions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from arclib.data import tokens as tk
from arclib.models.base import ArcModel
from arclib.models.layers import Block, Dropout, RoPE, key_mask


@dataclass
class DecoderOnlyConfig:
    d_model: int = 160
    n_heads: int = 4
    n_layers: int = 5
    d_ff: int = 704
    dropout: float = 0.167


class DecoderOnly(ArcModel):
    """Token + role embedding, RoPE on queries and keys, logits at the target positions.

    Each sample's sequence is packed as [real source tokens, tgt_in, padding]: padding then sits after every
    real token, so plain causal attention never reads it. Only the last block, which computes the T target rows
    alone, builds a (B, 1, T, S+T) causal mask. The packed index of a real token equals its count of earlier
    real tokens (cumsum(mask) - 1), so RoPE positions do not depend on how much padding the batch adds.
    """

    def __init__(self, config: DecoderOnlyConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(tk.VOCAB_SIZE, c.d_model)
        self.role_emb = nn.Embedding(tk.N_ROLES, c.d_model)
        self.drop = Dropout(c.dropout)
        self.rope = RoPE(c.d_model // c.n_heads)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, tk.VOCAB_SIZE)
        self.apply(self._init_weights)

    def forward(self, batch: tk.Batch) -> torch.Tensor:
        B, S = batch.src.shape
        T = batch.tgt_in.shape[1]
        n_src = batch.src_mask.sum(1, keepdim=True)  # (B, 1)
        j = torch.arange(S, device=n_src.device).expand(B, S)
        src_dest = torch.where(j < n_src, j, j + T)  # src padding goes to the tail
        tgt_dest = n_src + torch.arange(T, device=n_src.device)  # (B, T)
        seq = torch.full((B, S + T), tk.PAD, device=n_src.device)
        seq = seq.scatter(1, src_dest, batch.src).scatter(1, tgt_dest, batch.tgt_in)
        role = torch.full_like(seq, tk.ROLE_QUERY_OUT).scatter(1, src_dest, batch.src_role)
        x = self.drop(self.tok_emb(seq) + self.role_emb(role))  # (B, S+T, D)
        pos = torch.arange(S + T, device=x.device).expand(B, -1)
        for block in self.blocks[:-1]:
            x = block(x, causal=True, rope=self.rope, pos=pos)
        # Only the target positions' outputs are read, so the last block computes keys and values everywhere
        # but its queries, attention output and MLP at the T target positions alone.
        x = self.blocks[-1](x, causal=True, rope=self.rope, pos=pos, rows=tgt_dest)  # (B, T, D)
        return self.head(self.ln_f(x))

    def start(self, batch: tk.Batch) -> dict:
        # The source is left-packed, so its padding follows its real tokens; the steps append after index S,
        # so from then on the source padding must be masked explicitly.
        B, S = batch.src.shape
        x = self.tok_emb(batch.src) + self.role_emb(batch.src_role)
        pos = torch.arange(S, device=x.device).expand(B, -1)
        caches = [{} for _ in self.blocks]
        for block, cache in zip(self.blocks, caches):
            x = block(x, causal=True, rope=self.rope, pos=pos, cache=cache)
        return {"caches": caches, "mask": batch.src_mask, "n_src": batch.src_mask.sum(1, keepdim=True)}

    def step(self, state: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        B, t = tgt_in.shape
        state["mask"] = torch.cat(
            [state["mask"], torch.ones(B, 1, dtype=torch.bool, device=tgt_in.device)], 1
        )
        role = torch.full_like(tgt_in[:, -1:], tk.ROLE_QUERY_OUT)
        x = self.tok_emb(tgt_in[:, -1:]) + self.role_emb(role)  # (B, 1, D)
        pos = state["n_src"] + t - 1  # (B, 1)
        mask = key_mask(state["mask"])
        for block, cache in zip(self.blocks, state["caches"]):
            x = block(x, mask=mask, rope=self.rope, pos=pos, cache=cache)
        return self.head(self.ln_f(x))[:, -1]
