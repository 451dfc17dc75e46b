"""Augmentation voting: predict on several augmented views of an episode, map each answer back, vote.

View 0 is always the identity; views 1.. are seeded random augmentations (dihedral transform, colour
permutation fixing 0, context order). Each view's prediction is mapped back with `invert_grid`. Candidates
are ranked by how many views produced that exact grid, ties broken by the summed log-likelihood of those
views (at equal counts this ranks like the mean). The two best distinct grids are the two ARC attempts.

Without voting (`identity_attempts`) attempt 1 is the identity view's greedy answer and there is no second
attempt: the plain greedy decoder has nothing principled to offer as a runner-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from arclib.data.augment import Augmentation
from arclib.data.tokens import Episode, episode_length
from arclib.evaluation.arc_score import MAX_ATTEMPTS
from arclib.evaluation.predict import predict_grids

Prediction = tuple[np.ndarray | None, float]  # (grid or None, sum log-probability)
Predictor = Callable[[list[Episode]], list[Prediction]]


@dataclass
class Candidate:
    grid: np.ndarray
    votes: int
    logprob: float  # summed over the views that produced this grid


@dataclass
class VoteResult:
    identity: Prediction  # view 0's own answer (no voting)
    candidates: list[Candidate]  # best first

    @property
    def voted_attempts(self) -> list[np.ndarray]:
        return [c.grid for c in self.candidates[:MAX_ATTEMPTS]]

    @property
    def identity_attempts(self) -> list[np.ndarray | None]:
        return [self.identity[0]]


def model_predictor(model, batch_size: int = 32, progress: bool = False) -> Predictor:
    """Greedy free generation by `model` (see `predict_grids`), batch by batch with an optional progress bar."""

    def predict(episodes: list[Episode]) -> list[Prediction]:
        # Sort by length here rather than inside predict_grids, so each batch holds similar lengths.
        order = sorted(range(len(episodes)), key=lambda i: episode_length(episodes[i]))
        results: list = [None] * len(episodes)
        for s in tqdm(range(0, len(order), batch_size), desc="predicting", disable=not progress, leave=False):
            idx = order[s : s + batch_size]
            for i, pred in zip(idx, predict_grids(model, [episodes[i] for i in idx], batch_size)):
                results[i] = pred
        return results

    return predict


def view_augmentations(n_views: int, n_context: int, rng: np.random.Generator) -> list[Augmentation]:
    """The identity followed by n_views - 1 random augmentations drawn from `rng`."""
    if n_views < 1:
        raise ValueError(f"need at least one view, got {n_views}")
    return [Augmentation()] + [Augmentation.random(rng, n_context) for _ in range(n_views - 1)]


def vote(predictions: Sequence[Prediction]) -> list[Candidate]:
    """Group identical grids (already in the original frame); invalid predictions (None) get no vote."""
    groups: dict[bytes, Candidate] = {}
    for grid, logprob in predictions:
        if grid is None:
            continue
        key = bytes(grid.shape) + grid.astype(np.int8).tobytes()
        if key in groups:
            groups[key].votes += 1
            groups[key].logprob += logprob
        else:
            groups[key] = Candidate(grid, 1, logprob)
    return sorted(groups.values(), key=lambda c: (-c.votes, -c.logprob))


def predict_with_voting(
    predictor: Predictor, episodes: Sequence[Episode], n_views: int = 8, seed: int = 0
) -> list[VoteResult]:
    """Vote over `n_views` views of each episode (use `model_predictor(model)` for a network).

    All views of all episodes go through a single predictor call, so batches fill up with similar lengths.
    Episode i's views are drawn from the seed (seed, i): results do not depend on the other episodes.
    """
    views = [
        view_augmentations(n_views, len(ep.context), np.random.default_rng([seed, i]))
        for i, ep in enumerate(episodes)
    ]
    flat = [aug.episode(ep) for ep, augs in zip(episodes, views) for aug in augs]
    preds = predictor(flat)
    if len(preds) != len(flat):
        raise RuntimeError(f"predictor returned {len(preds)} predictions for {len(flat)} episodes")
    results = []
    for i, augs in enumerate(views):
        mine = preds[i * n_views : (i + 1) * n_views]
        back = [(None if g is None else aug.invert_grid(g), lp) for aug, (g, lp) in zip(augs, mine)]
        results.append(VoteResult(identity=back[0], candidates=vote(back)))
    return results
