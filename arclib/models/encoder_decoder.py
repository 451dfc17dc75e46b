"""Exp 0, 1 and 2: an encoder over the whole source and a causal decoder cross-attending to it.

Exp 0 is the plain model; `grid2d` (Exp 1) adds row/col embeddings to both sides; `perm_inv` (Exp 2) also runs
the network on canonically relabelled colours, which makes it exactly colour-permutation equivariant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from arclib.data import tokens as tk
from arclib.models.base import ArcModel
from arclib.models.layers import (
    Block,
    ColourCanon,
    DecoderBlock,
    Dropout,
    Grid2D,
    Segments,
    key_mask,
    sinusoidal,
)


@dataclass
class EncoderDecoderConfig:
    d_model: int = 160
    n_heads: int = 4
    n_enc_layers: int = 1
    n_dec_layers: int = 3
    d_ff: int = 704
    dropout: float = 0.167
    grid2d: bool = False
    perm_inv: bool = False


class EncoderDecoder(ArcModel):
    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(tk.VOCAB_SIZE, c.d_model)
        self.role_emb = nn.Embedding(tk.N_ROLES, c.d_model)
        self.grid = Grid2D(c.d_model) if c.grid2d else None
        self.drop = Dropout(c.dropout)
        self.encoder = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_enc_layers)
        )
        self.ln_enc = nn.LayerNorm(c.d_model)
        self.decoder = nn.ModuleList(
            DecoderBlock(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_dec_layers)
        )
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, tk.VOCAB_SIZE)
        self.apply(self._init_weights)

    # encoder --------------------------------------------------------------------------------------------

    def embed_source(self, tokens, row, col, role, pos) -> torch.Tensor:
        """Encoder input (B, S, D): token + role + 1D sinusoidal position `pos` (S,) or (B, S) (+ Grid2D)."""
        x = self.tok_emb(tokens) + self.role_emb(role) + sinusoidal(pos, self.config.d_model)
        if self.grid is not None:
            x = x + self.grid(row, col)
        return self.drop(x)

    def run_encoder(self, x: torch.Tensor, attn_mask: torch.Tensor | Segments) -> torch.Tensor:
        for block in self.encoder:
            x = block(x, mask=attn_mask)
        return self.ln_enc(x)

    def encode(self, batch: tk.Batch, canon: ColourCanon | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One (memory (B, M, D), memory mask (B, M)) per decoder layer."""
        src = canon.source(batch.src) if canon else batch.src
        pos = torch.arange(src.shape[1], device=src.device)
        x = self.embed_source(src, batch.src_row, batch.src_col, batch.src_role, pos)
        memory = self.run_encoder(x, key_mask(batch.src_mask))  # (B, S, D)
        return [(memory, batch.src_mask)] * len(self.decoder)

    def canon(self, batch: tk.Batch) -> ColourCanon | None:
        return ColourCanon(batch) if self.config.perm_inv else None

    # decoder --------------------------------------------------------------------------------------------

    def embed_target(
        self, tgt_in: torch.Tensor, canon: ColourCanon | None, last_only: bool = False
    ) -> torch.Tensor:
        """Decoder input (B, T, D), or (B, 1, D) for the last position only; positions need the whole prefix."""
        T = tgt_in.shape[1]
        pos = torch.arange(T, device=tgt_in.device)
        row, col = tk.decoder_positions(tgt_in) if self.grid is not None else (None, None)
        tokens = canon.target(tgt_in) if canon else tgt_in  # labels depend on the whole prefix
        if last_only:
            tokens, pos = tokens[:, -1:], pos[-1:]
            row, col = (row[:, -1:], col[:, -1:]) if row is not None else (None, None)
        x = self.tok_emb(tokens) + sinusoidal(pos, self.config.d_model)
        if self.grid is not None:
            x = x + self.grid(row, col)
        return self.drop(x)

    def decode(self, x, memories, caches=None) -> torch.Tensor:
        for i, (block, (memory, mask)) in enumerate(zip(self.decoder, memories)):
            x = block(x, memory, mask, cache=caches[i] if caches else None)
        return self.head(self.ln_f(x))

    def forward(self, batch: tk.Batch) -> torch.Tensor:
        canon = self.canon(batch)
        logits = self.decode(self.embed_target(batch.tgt_in, canon), self.encode(batch, canon))
        return canon.logits_back(logits, batch.tgt_in) if canon else logits

    def start(self, batch: tk.Batch) -> dict:
        canon = self.canon(batch)
        return {"canon": canon, "memories": self.encode(batch, canon), "caches": [{} for _ in self.decoder]}

    def step(self, state: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        canon = state["canon"]
        x = self.embed_target(tgt_in, canon, last_only=True)
        logits = self.decode(x, state["memories"], state["caches"])[:, -1]
        return canon.logits_back(logits, tgt_in) if canon else logits
