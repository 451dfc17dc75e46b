"""Exp 3, the champion: Exp 2 plus a context encoder that reads each demonstration pair on its own, and a bridge.

Encoding pairs separately, with no position that says which pair came first, and aggregating them by a mean
makes the model invariant to the order of the demonstrations (exactly, up to float summation order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from arclib.data import tokens as tk
from arclib.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from arclib.models.layers import ColourCanon, set_mean


@dataclass
class ChampionConfig(EncoderDecoderConfig):
    d_ff: int = 640
    grid2d: bool = True
    perm_inv: bool = True


def task_code(pair_states: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
    """(B, P, L, D) pair-encoder states, (B, P, L) mask -> (B, D) task code.

    Masked mean over each pair's tokens gives a pair code; the mean over real pairs (padding-only pairs, from
    episodes with fewer demonstrations than the batch's widest, are excluded) gives the task code.
    """
    return set_mean(set_mean(pair_states, pair_mask), pair_mask.any(-1))


class Champion(EncoderDecoder):
    """The pair encoder and the query encoder are one shared stack (roles tell context input, context output
    and query input apart): their states then live in one space, which the decoder reads through a single
    cross-attention, and the parameter budget goes to depth instead of a second encoder.

    Bridge: a per-layer linear projection of the task code is prepended to that layer's cross-attention
    memory as one extra token. Attention lets each decoder position decide how much of the summary to read,
    where adding it to the hidden state would push every position alike; it also gives every cross-attention
    at least one real key. The decoder additionally cross-attends to all pair-token states, concatenated over
    pairs (a set, since nothing marks pair order): a mean-pooled code alone cannot carry the cell-level detail
    of the demonstrations that most tasks need.
    """

    def __init__(self, config: ChampionConfig):
        super().__init__(config)
        self.bridge = nn.Linear(config.d_model, config.n_dec_layers * config.d_model)
        self.bridge.apply(self._init_weights)

    def encode(self, batch: tk.Batch, canon: ColourCanon | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        B, P, L = batch.pair.shape
        D = self.config.d_model
        pair = canon.apply(batch.pair) if canon else batch.pair
        flat = (
            t.reshape(B * P, L)
            for t in (pair, batch.pair_row, batch.pair_col, batch.pair_role, batch.pair_mask)
        )
        pair_states = self.encode_tokens(*flat, pos1d=False).view(B, P, L, D)
        query = canon.apply(batch.query) if canon else batch.query
        role = torch.full_like(query, tk.ROLE_QUERY_IN)
        query_states = self.encode_tokens(
            query, batch.query_row, batch.query_col, role, batch.query_mask, pos1d=False
        )
        memory = torch.cat([query_states, pair_states.view(B, P * L, D)], 1)  # (B, Q + P*L, D)
        mask = torch.cat([batch.query_mask, batch.pair_mask.view(B, P * L)], 1)
        code = self.bridge(task_code(pair_states, batch.pair_mask)).view(B, -1, 1, D)  # (B, layers, 1, D)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        return [(torch.cat([code[:, i], memory], 1), mask) for i in range(len(self.decoder))]
