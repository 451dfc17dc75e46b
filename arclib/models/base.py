"""What every model shares: teacher-forced forward, the loss, and batched greedy generation with a KV cache."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from arclib.data import tokens as tk


class ArcModel(nn.Module):
    """A model reads a `Batch` and predicts `batch.tgt_out` from `batch.tgt_in`.

    Subclasses define `forward(batch) -> (B, T, V)` logits, and for generation `start(batch) -> state` and
    `step(state, tgt_in) -> (B, V)` logits for the token after `tgt_in` (B, t), reading only its last token
    plus whatever `start` and earlier steps cached in `state`.
    """

    config = None

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def start(self, batch: tk.Batch):
        raise NotImplementedError

    def step(self, state, tgt_in: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def loss(logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over real target tokens (PAD ignored), mean over those tokens."""
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=tk.PAD)

    @torch.no_grad()
    def generate(
        self, batch: tk.Batch, max_len: int = tk.MAX_TARGET_LEN
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding: (tokens (B, T') after BOS, summed log-probability of the chosen tokens (B,)).

        A sample stops at EOS and writes PAD afterwards. A sample that has written 30 rows is forced to EOS,
        and one whose current row holds 30 cells to ROW, so every output fits a 30x30 canvas.
        """
        B, device = len(batch), batch.src.device
        state = self.start(batch)
        tgt = torch.full((B, 1), tk.BOS, dtype=torch.long, device=device)
        logprob = torch.zeros(B, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        for _ in range(max_len):
            lp = self.step(state, tgt).float().log_softmax(-1)  # (B, V)
            row, col = tk.decoder_positions(tgt)
            nxt = lp.argmax(-1)
            nxt = torch.where(col[:, -1] >= tk.MAX_SIDE, tk.ROW, nxt)
            nxt = torch.where(row[:, -1] >= tk.MAX_SIDE, tk.EOS, nxt)
            logprob += torch.where(done, 0.0, lp.gather(1, nxt[:, None]).squeeze(1))
            nxt = torch.where(done, tk.PAD, nxt)
            done |= nxt == tk.EOS
            tgt = torch.cat([tgt, nxt[:, None]], 1)
            if done.all():
                break
        return tgt[:, 1:], logprob
