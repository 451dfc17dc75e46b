"""What every model shares: teacher-forced forward, the loss, and batched greedy generation with a KV cache."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from arclib.data import tokens as tk


def token_nll(logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
    """(B, T, V), (B, T) -> per-token negative log-likelihood (B, T), 0 at PAD."""
    return F.cross_entropy(logits.transpose(1, 2).float(), tgt_out, ignore_index=tk.PAD, reduction="none")


def novel_colour_targets(batch: tk.Batch) -> torch.Tensor:
    """(B, T) True at target cells whose colour (1..9; 0 keeps its id) is absent from the source. A
    colour-equivariant model can only guess such a colour among the unseen ones until it has written it, so
    losses are also compared without them."""
    colours = torch.arange(tk.N_COLOURS, device=batch.src.device)
    in_source = ((batch.src[:, :, None] == colours) & batch.src_mask[:, :, None]).any(1)  # (B, 10)
    is_cell = (batch.tgt_out > 0) & (batch.tgt_out < tk.N_COLOURS)
    return is_cell & ~in_source.gather(1, batch.tgt_out.clamp(max=tk.N_COLOURS - 1))


def select_rows(state, keep: torch.Tensor):
    """The generation state of the samples `keep` (indices into dim 0 of every tensor the state holds).

    A tensor the state holds more than once (the memory every decoder layer reads) is copied once.
    """
    copies = {}

    def select(x):
        if isinstance(x, torch.Tensor):
            if id(x) not in copies:
                copies[id(x)] = x[keep]
            return copies[id(x)]
        if isinstance(x, dict):
            return {k: select(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(select(v) for v in x)
        if hasattr(x, "select_rows"):
            return x.select_rows(keep)
        if x is None or isinstance(x, int):  # a cache's length
            return x
        raise TypeError(f"cannot select samples from a {type(x).__name__} in a generation state")

    return select(state)


class ArcModel(nn.Module):
    """A model reads a `Batch` and predicts `batch.tgt_out` from `batch.tgt_in`.

    Subclasses define `forward(batch) -> (B, T, V)` logits, and for generation `start(batch) -> state` and
    `step(state, tgt_in) -> (B, V)` logits for the token after `tgt_in` (B, t), reading only its last token
    plus whatever `start` and earlier steps cached in `state`. Every tensor in a state has the batch first, so
    generation can drop finished samples from it (`select_rows`).
    """

    config = None

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # Unit scale, like the fixed sinusoidal positions summed with these tables: at std 0.02 the
            # sinusoid (amplitude 1) drowned token identity and the models barely learned in a CPU budget.
            nn.init.normal_(module.weight, std=1.0)

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
        self, batch: tk.Batch, max_len: int | torch.Tensor = tk.MAX_TARGET_LEN, stop_invalid: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding: (tokens (B, T') after BOS, summed log-probability of the chosen tokens (B,)).

        `max_len` caps the tokens each sample writes: one cap for all, or one per sample (B,), so that what a
        sample writes never depends on the other samples in its batch.
        A sample stops at EOS and writes PAD afterwards. A sample that has written 30 rows is forced to EOS,
        and one whose current row holds 30 cells to ROW, so every output fits a 30x30 canvas. With
        `stop_invalid`, a sample also stops as soon as its tokens can no longer form a grid (a special token
        mid-grid, an empty row, or a row whose width differs from the first row's): its decoded grid is None
        either way, and an untrained model no longer writes 930 tokens of noise. Finished samples leave the
        state once a quarter of it has finished, so they stop costing steps.
        """
        B, device = len(batch), batch.src.device
        limit = torch.as_tensor(max_len, device=device).expand(B)
        state = self.start(batch)
        live = torch.arange(B, device=device)  # the samples `state` still holds, in its row order
        tgt = torch.full((B, 1), tk.BOS, dtype=torch.long, device=device)
        lp = torch.zeros(B, tk.VOCAB_SIZE, device=device)
        logprob = torch.zeros(B, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        width = torch.full((B,), -1, dtype=torch.long, device=device)  # width of the first row, once written
        row = torch.zeros(B, dtype=torch.long, device=device)
        col = torch.zeros(B, dtype=torch.long, device=device)  # (row, col) of the next token
        for written in range(1, int(limit.max()) + 1):
            lp[live] = self.step(state, tgt[live]).float().log_softmax(-1)  # (B, V); stale rows are done
            nxt = lp.argmax(-1)
            nxt = torch.where(col >= tk.MAX_SIDE, tk.ROW, nxt)
            nxt = torch.where(row >= tk.MAX_SIDE, tk.EOS, nxt)
            logprob += torch.where(done, 0.0, lp.gather(1, nxt[:, None]).squeeze(1))
            nxt = torch.where(done, tk.PAD, nxt)
            is_row = nxt == tk.ROW
            if stop_invalid:
                is_cell = nxt < tk.N_COLOURS
                bad_row = is_row & ((col == 0) | ((width >= 0) & (col != width)))
                too_wide = is_cell & (width >= 0) & (col >= width)
                special = ~is_cell & ~is_row & (nxt != tk.EOS) & (nxt != tk.PAD)
                done |= bad_row | too_wide | special
            width = torch.where(is_row & (width < 0), col, width)
            row, col = row + is_row.long(), torch.where(is_row, 0, col + 1)
            done |= (nxt == tk.EOS) | (written >= limit)
            tgt = torch.cat([tgt, nxt[:, None]], 1)
            if done.all():
                break
            running = ~done[live]
            if running.sum() <= 0.75 * len(live):  # drop finished samples: each step reads every row's cache
                keep = running.nonzero().squeeze(1)
                state, live = select_rows(state, keep), live[keep]
        return tgt[:, 1:], logprob
