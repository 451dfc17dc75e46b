"""LightningDataModule over the task split: fresh training episodes each epoch, fixed validation episodes.

Validation dataloaders, in order: "val" (the split's validation tasks) and "heldout" (the "select" half of the
held-out examples of the training tasks: keys never trained on; the "report" half is kept for the report).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from arclib.data.canonical import example_keys
from arclib.data.episodes import AugmentConfig, EpisodeBatchSampler, EpisodeDataset, EpisodePlanner
from arclib.data.generate import load_examples
from arclib.data.split import BY_EXAMPLE_TRAIN_FRACTION, heldout_slice, task_split
from arclib.data.tokens import Episode, collate

VAL_SETS = ("val", "heldout")


class ArcDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data",
        split: str = "seed",
        split_seed: int = 307,
        batch_size: int = 32,
        n_context: int = 2,
        augment_dihedral: bool = True,
        augment_colours: bool = True,
        augment_context_order: bool = True,
        train_per_task: int | None = None,
        val_per_task: int | None = None,
        max_train_batches: int | None = None,
        num_workers: int = 1,
        seed: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.augment = AugmentConfig(augment_dihedral, augment_colours, augment_context_order)
        self.data_dir = _resolve(data_dir)
        self.seed = 307 if seed is None else seed

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.split = task_split(hp.split, hp.split_seed)
        train = load_examples(self.data_dir / "tasks", self.split["train"])
        if hp.split == "by_example":
            cut = {t: int(len(p) * BY_EXAMPLE_TRAIN_FRACTION) for t, p in train.items()}
            val = {t: _new_keys(p[cut[t] :], p[: cut[t]]) for t, p in train.items()}
            train = {t: p[: cut[t]] for t, p in train.items()}
        else:
            val = load_examples(self.data_dir / "tasks", self.split["val"])
        heldout_ids = [t for t in self.split["train"] if (self.data_dir / "heldout" / f"{t}.json").exists()]
        self.examples = {
            "train": train,
            "val": val,
            "heldout": {
                t: heldout_slice(p, "select")
                for t, p in load_examples(self.data_dir / "heldout", heldout_ids).items()
            },
        }
        self.planners = {k: EpisodePlanner(v, hp.n_context) for k, v in self.examples.items()}

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer  # None when used outside a Trainer (notebooks, bench)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, name: str, train: bool) -> DataLoader:
        hp = self.hparams
        # Training batches are sharded across ranks; every rank validates on all of the (small, fixed)
        # validation episodes, so all ranks log the same metrics and per-task keys.
        rank, world = self._rank() if train else (0, 1)
        sampler = EpisodeBatchSampler(
            self.planners[name],
            hp.batch_size,
            self.seed,
            self.augment if train else AugmentConfig(False, False, False),
            train=train,
            per_task=hp.train_per_task if train else hp.val_per_task,
            max_batches=hp.max_train_batches if train else None,
            rank=rank,
            world_size=world,
        )
        return DataLoader(
            EpisodeDataset(self.examples[name]),
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(name, train=False) for name in VAL_SETS]

    def generation_episodes(self, name: str, per_task: int) -> list[Episode]:
        """A fixed subset of validation episodes (the first `per_task` queries of each task) for free generation."""
        sampler = EpisodeBatchSampler(self.planners[name], 1, self.seed, train=False, per_task=per_task)
        dataset = EpisodeDataset(self.examples[name])
        return [dataset[plan] for batch in sampler for plan in batch]


def _new_keys(examples: list, seen: list) -> list:
    """The examples whose canonical key is not among `seen`'s (by_example validation must not repeat training)."""
    seen_keys = set(example_keys(seen))
    return [e for e, k in zip(examples, example_keys(examples)) if k not in seen_keys]


def _resolve(path: str | Path) -> Path:
    """Relative data paths resolve against the repository root, so notebooks (cwd notebooks/) and CLI agree."""
    path = Path(path)
    if path.is_absolute():
        return path
    return Path(__file__).resolve().parents[2] / path
