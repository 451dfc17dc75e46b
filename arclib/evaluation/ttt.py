"""Test-time training (TTT): fine-tune a copy of a trained model on one task's demonstration pairs.

Training episodes are leave-one-out: each step draws demos as queries, with up to `n_context` of the *other*
demos as context (the models were trained with 2), under a fresh random augmentation (dihedral, colour
permutation fixing 0, context order). The fine-tuned copy then predicts the test inputs with voting.

The functions here take the demonstration pairs and the test *inputs* only, so no test output can reach
them; `inputs_only` strips a task's test pairs down to their inputs without touching the outputs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from arclib.data.augment import Augmentation
from arclib.data.tokens import Episode, collate
from arclib.evaluation.voting import VoteResult, model_predictor, predict_with_voting

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TTTConfig:
    steps: int = 300
    lr: float = 1e-4  # well below the training lr (1.8e-3): a few demos are easy to overfit
    batch_size: int = 4
    n_context: int = 2  # context pairs per training episode, as in pre-training
    grad_clip: float = 1.0
    seed: int = 0


def inputs_only(test_pairs: Sequence[Pair]) -> list[np.ndarray]:
    """The inputs of (input, output) test pairs. Unpacks each pair without reading its output."""
    return [x for x, _ in test_pairs]


def leave_one_out_episode(
    task_id: str, demos: Sequence[Pair], rng: np.random.Generator, n_context: int
) -> Episode:
    """One demo as the query, up to `n_context` other demos (random, in random order) as context, augmented."""
    q = int(rng.integers(len(demos)))
    others = [i for i in range(len(demos)) if i != q]
    chosen = rng.choice(others, size=min(n_context, len(others)), replace=False)
    ep = Episode(task_id, [demos[i] for i in chosen], *demos[q])
    return Augmentation.random(rng, len(chosen)).episode(ep)


def ttt_fine_tune(
    model: torch.nn.Module,
    task_id: str,
    demos: Sequence[Pair],
    config: TTTConfig = TTTConfig(),
    progress: bool = False,
) -> tuple[torch.nn.Module, list[float]]:
    """A fine-tuned deep copy of `model` (the original is left untouched) and the loss of every step."""
    if len(demos) < 2:
        raise ValueError(f"task {task_id}: leave-one-out TTT needs at least 2 demos, got {len(demos)}")
    tuned = copy.deepcopy(model)
    tuned.train()
    device = next(tuned.parameters()).device
    optimiser = torch.optim.Adam(tuned.parameters(), lr=config.lr)
    rng = np.random.default_rng([config.seed, int.from_bytes(task_id.encode(), "little") % 2**32])
    losses = []
    for _ in tqdm(range(config.steps), desc=f"TTT {task_id}", disable=not progress, leave=False):
        batch = collate(
            [leave_one_out_episode(task_id, demos, rng, config.n_context) for _ in range(config.batch_size)]
        )
        batch = batch.to(device)
        loss = tuned.loss(tuned(batch), batch.tgt_out)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tuned.parameters(), config.grad_clip)
        optimiser.step()
        losses.append(loss.item())
    tuned.eval()
    return tuned, losses


def ttt_predict(
    model: torch.nn.Module,
    task_id: str,
    demos: Sequence[Pair],
    test_inputs: Sequence[np.ndarray],
    config: TTTConfig = TTTConfig(),
    n_views: int = 8,
    context: int | None = None,
    vote_seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> list[VoteResult]:
    """Fine-tune on `demos`, then predict every test input with voting.

    Context at prediction time: all demos, or the first `context` of them. TTT trains on all demos either way.
    """
    tuned, _ = ttt_fine_tune(model, task_id, demos, config, progress)
    shown = list(demos) if context is None else list(demos[:context])
    episodes = [Episode(task_id, shown, x) for x in test_inputs]
    return predict_with_voting(model_predictor(tuned, batch_size), episodes, n_views, vote_seed)
