"""Free generation of query outputs for a list of episodes, in length-sorted batches."""

from __future__ import annotations

import numpy as np
import torch

from arclib.data.tokens import MAX_TARGET_LEN, PAD, Episode, collate, episode_length, tokens_to_grid


def generation_budget(episode: Episode) -> int:
    """Most tokens worth generating: twice the longest context output or query input, at most 30x30.

    An ARC output rarely exceeds twice the largest grid the episode shows (every output of the 18 tasks' data
    fits, a test checks); without this bound, an undertrained model that keeps writing rows of the right width
    would write all 930 tokens of a 30x30 grid every time.
    """
    grids = (episode.query_input, *(y for _, y in episode.context))
    longest = max(g.shape[0] * (g.shape[1] + 1) for g in grids)
    return min(MAX_TARGET_LEN, 2 * longest + 1)


@torch.no_grad()
def generate_tokens(
    model, episodes: list[Episode], batch_size: int = 32, device: torch.device | str | None = None
) -> list[tuple[list[int], float]]:
    """(generated tokens after BOS, up to EOS or the budget's end, sum log-probability) per episode, in order.

    Each episode stops after its own `generation_budget` tokens, whatever else shares its batch.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(episodes)), key=lambda i: episode_length(episodes[i]))
    results: list = [None] * len(episodes)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            chosen = [episodes[i] for i in idx]
            budget = torch.tensor([generation_budget(e) for e in chosen], device=device)
            tokens, logprob = model.generate(collate(chosen).to(device), max_len=budget)
            for j, i in enumerate(idx):
                row = tokens[j].tolist()
                end = row.index(PAD) if PAD in row else len(row)  # PAD only follows the stop
                results[i] = (row[:end], float(logprob[j]))
    finally:
        model.train(was_training)
    return results


def predict_grids(
    model, episodes: list[Episode], batch_size: int = 32, device: torch.device | str | None = None
) -> list[tuple[np.ndarray | None, float]]:
    """(grid or None if the model wrote no valid rectangle, sum log-probability) for each episode, in order."""
    return [(tokens_to_grid(t), lp) for t, lp in generate_tokens(model, episodes, batch_size, device)]
