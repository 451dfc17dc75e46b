"""Free generation of query outputs for a list of episodes, in length-sorted batches."""

from __future__ import annotations

import numpy as np
import torch

from arclib.data.tokens import Episode, collate, episode_length, tokens_to_grid


@torch.no_grad()
def predict_grids(
    model, episodes: list[Episode], batch_size: int = 32, device: torch.device | str | None = None
) -> list[tuple[np.ndarray | None, float]]:
    """(grid or None if the model wrote no valid rectangle, sum log-probability) for each episode, in order."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(episodes)), key=lambda i: episode_length(episodes[i]))
    results: list = [None] * len(episodes)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = collate([episodes[i] for i in idx]).to(device)
            tokens, logprob = model.generate(batch)
            for j, i in enumerate(idx):
                results[i] = (tokens_to_grid(tokens[j].tolist()), float(logprob[j]))
    finally:
        model.train(was_training)
    return results
