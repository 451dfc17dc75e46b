"""Serialisation of episodes into token tensors, shared by all five models.

Vocabulary: colours 0..9, then PAD, BOS, EOS, ROW (end of a grid row), SEP_IN and SEP_OUT (start of an
input / output grid in the source). A grid of h x w becomes h*(w+1) tokens: each row's cells then ROW.
The target is the query output written as `BOS cells.. ROW .. EOS`, so the model predicts the size too.

Every token carries (row, col) in its own grid (ROW sits at col = w, separators at (0, 0)) and a role:
context input, context output, query input or query output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

N_COLOURS = 10
PAD, BOS, EOS, ROW, SEP_IN, SEP_OUT = 10, 11, 12, 13, 14, 15
VOCAB_SIZE = 16
MAX_SIDE = 30
MAX_POS = MAX_SIDE + 1  # rows/cols 0..30 (ROW tokens sit at col = width)
MAX_TARGET_LEN = MAX_SIDE * (MAX_SIDE + 1) + 1  # 30x30 grid plus EOS

ROLE_CTX_IN, ROLE_CTX_OUT, ROLE_QUERY_IN, ROLE_QUERY_OUT = 0, 1, 2, 3
N_ROLES = 4


def grid_tokens(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, rows, cols), each of length h*(w+1): cells of each row followed by ROW."""
    h, w = grid.shape
    tokens = np.concatenate([grid.astype(np.int64), np.full((h, 1), ROW, np.int64)], axis=1).reshape(-1)
    rows = np.repeat(np.arange(h), w + 1)
    cols = np.tile(np.arange(w + 1), h)
    return tokens, rows, cols


def tokens_to_grid(tokens) -> np.ndarray | None:
    """Inverse of `grid_tokens` for generated tokens (stops at EOS/PAD). None if not a valid rectangle."""
    rows, row = [], []
    for t in (int(t) for t in tokens):
        if t in (EOS, PAD):
            break
        if t == ROW:
            if not row:
                return None
            rows.append(row)
            row = []
        elif t < N_COLOURS:
            row.append(t)
        else:
            return None
    if (
        row
        or not rows
        or any(len(r) != len(rows[0]) for r in rows)
        or len(rows) > MAX_SIDE
        or len(rows[0]) > MAX_SIDE
    ):
        return None
    return np.asarray(rows, dtype=np.int8)


def decoder_positions(tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of the cell each decoder position predicts, from the ROW tokens already written.

    tgt_in: (B, T) starting with BOS. Position t predicts token t+1 of the grid; its row is the number of ROW
    tokens in tgt_in[:, 1:t+1] and its col the number of tokens since the last ROW (or BOS). Causal by
    construction: position t reads only tgt_in[:, :t+1].
    """
    is_row = (tgt_in == ROW).long()  # (B, T)
    row = is_row.cumsum(1)
    idx = torch.arange(tgt_in.shape[1], device=tgt_in.device).expand_as(tgt_in)
    boundary = torch.where((tgt_in == ROW) | (tgt_in == BOS), idx, torch.full_like(idx, -1))
    last_boundary = boundary.cummax(1).values
    col = idx - last_boundary
    return row.clamp(max=MAX_POS - 1), col.clamp(max=MAX_POS - 1)


@dataclass
class Episode:
    """Context pairs and a query of one task. Grids are int8 numpy arrays."""

    task_id: str
    context: list[tuple[np.ndarray, np.ndarray]]
    query_input: np.ndarray
    query_output: np.ndarray | None = None  # None when unknown (real test inputs at prediction time)


@dataclass
class Batch:
    """Padded token tensors for a batch of episodes. Masks are True at real tokens.

    src_*:   (B, S)      context pairs then the query input, packed left with no interior padding
    query:   (B, Q)      the query input's tokens alone (PermInv ranks colours by their first position here)
    tgt_in:  (B, T)      BOS + query output tokens;  tgt_out: (B, T) query output tokens + EOS, PAD-padded
    """

    src: torch.Tensor
    src_row: torch.Tensor
    src_col: torch.Tensor
    src_role: torch.Tensor
    src_mask: torch.Tensor
    query: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    task_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.src.shape[0]

    def to(self, device) -> Batch:
        return Batch(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in self.__dict__.items()})

    def pin_memory(self) -> Batch:
        """Page-locked copies, so a DataLoader with pin_memory=True can hand the GPU a batch asynchronously."""
        return Batch(**{k: v.pin_memory() if torch.is_tensor(v) else v for k, v in self.__dict__.items()})


def _grid_segment(grid, role, sep):
    tokens, rows, cols = grid_tokens(grid)
    n = len(tokens) + 1
    return (
        np.concatenate([[sep], tokens]),
        np.concatenate([[0], rows]),
        np.concatenate([[0], cols]),
        np.full(n, role),
    )


def _concat(segments):
    return tuple(np.concatenate(parts) for parts in zip(*segments))


def _pad(seqs: list[np.ndarray], value: int, length: int | None = None) -> torch.Tensor:
    length = length or max(len(s) for s in seqs)
    out = np.full((len(seqs), length), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out)


def episode_sequences(ep: Episode) -> dict[str, tuple]:
    """Per-episode numpy sequences (tokens, rows, cols, roles) for src and the query input, plus target."""
    segments = [
        _grid_segment(g, role, sep)
        for x, y in ep.context
        for g, role, sep in ((x, ROLE_CTX_IN, SEP_IN), (y, ROLE_CTX_OUT, SEP_OUT))
    ]
    query = _grid_segment(ep.query_input, ROLE_QUERY_IN, SEP_IN)
    src = _concat([*segments, query])
    if ep.query_output is not None:
        out_tokens = grid_tokens(ep.query_output)[0]
        tgt_in = np.concatenate([[BOS], out_tokens])
        tgt_out = np.concatenate([out_tokens, [EOS]])
    else:
        tgt_in, tgt_out = np.array([BOS]), np.array([PAD])
    return {"src": src, "query": query, "tgt_in": tgt_in, "tgt_out": tgt_out}


def collate(episodes: list[Episode]) -> Batch:
    """Pad a list of episodes into a Batch. A plain module-level function, so DataLoader workers can pickle it."""
    seqs = [episode_sequences(ep) for ep in episodes]
    src_tok = _pad([s["src"][0] for s in seqs], PAD)
    return Batch(
        src=src_tok,
        src_row=_pad([s["src"][1] for s in seqs], 0),
        src_col=_pad([s["src"][2] for s in seqs], 0),
        src_role=_pad([s["src"][3] for s in seqs], 0),
        src_mask=src_tok != PAD,
        query=_pad([s["query"][0] for s in seqs], PAD),
        tgt_in=_pad([s["tgt_in"] for s in seqs], PAD),
        tgt_out=_pad([s["tgt_out"] for s in seqs], PAD),
        task_ids=[ep.task_id for ep in episodes],
    )


def episode_length(ep: Episode) -> int:
    """Source plus target tokens: the sort key for length-bucketed batching."""
    grids = [g for pair in ep.context for g in pair] + [ep.query_input]
    n = sum(g.shape[0] * (g.shape[1] + 1) + 1 for g in grids)
    if ep.query_output is not None:
        n += ep.query_output.shape[0] * (ep.query_output.shape[1] + 1) + 1
    return n
