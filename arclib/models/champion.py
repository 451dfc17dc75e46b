"""Exp 3, the champion: Exp 2 plus a context encoder that reads each demonstration pair on its own, and a bridge.

Encoding pairs separately, each with 1D positions counted from its own start (Exp 2 counts them over the
packed source), and aggregating them by a mean makes the model invariant to the order of the demonstrations
(exactly, up to float summation order). The only other change from Exp 2 is parameter matching: d_ff 640
instead of 704 pays for the bridge (`exp_2_perminv_dff640` is Exp 2 at d_ff 640, the control).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from arclib.data import tokens as tk
from arclib.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from arclib.models.layers import ColourCanon, Segments, pair_segments, set_mean


@dataclass
class ChampionConfig(EncoderDecoderConfig):
    d_ff: int = 640
    grid2d: bool = True
    perm_inv: bool = True


def segment_positions(segment: torch.Tensor) -> torch.Tensor:
    """(B, S) segments -> each token's index from the start of its own segment."""
    idx = torch.arange(segment.shape[1], device=segment.device).expand_as(segment)
    starts = torch.ones_like(segment, dtype=torch.bool)
    starts[:, 1:] = segment[:, 1:] != segment[:, :-1]
    return idx - torch.where(starts, idx, 0).cummax(1).values


def task_code(states: torch.Tensor, segment: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """(B, S, D) encoder states, (B, S) segments -> (B, D) task code.

    Masked mean over each pair's tokens gives a pair code; the mean over the episode's real pairs (episodes with
    fewer demonstrations than the batch's widest have fewer) gives the task code.
    """
    member = segment[:, None, :] == torch.arange(n_pairs, device=segment.device)[None, :, None]  # (B, P, S)
    pair_codes = member.to(states.dtype) @ states / member.sum(-1, keepdim=True).clamp(min=1)  # (B, P, D)
    return set_mean(pair_codes, member.any(-1))


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
        # One pass over the packed source, attention within segments, encodes every pair, and the query input,
        # on its own: no pair padding, and no position or attention links one pair to another.
        src = canon.source(batch.src) if canon else batch.src
        segment = pair_segments(batch.src, batch.src_role, batch.src_mask)
        x = self.embed_source(src, batch.src_row, batch.src_col, batch.src_role, segment_positions(segment))
        memory = self.run_encoder(x, Segments(segment, batch.src_mask))  # (B, S, D)
        n_pairs = int(segment.max()) + 1
        code = self.bridge(task_code(memory, segment, n_pairs)).view(len(batch), -1, 1, memory.shape[-1])
        mask = torch.cat([torch.ones_like(batch.src_mask[:, :1]), batch.src_mask], 1)
        return [(torch.cat([code[:, i], memory], 1), mask) for i in range(len(self.decoder))]
