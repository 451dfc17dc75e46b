"""LightningDataModule over the task split: fresh training episodes each epoch, fixed validation episodes.

Validation dataloaders, in order: "val" (the split's validation tasks) and "heldout" (the "select" half of the
held-out examples of the training tasks: keys never trained on; the "report" half is kept for the report).

The training loader is resumable: a checkpoint records the epoch and how many of its batches were trained on, and
a resumed run draws that epoch's batches again (the sampler is a pure function of seed and epoch) and skips the
ones already trained on, so it sees exactly the data the uninterrupted run would have seen.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

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
        curriculum_epochs: int = 0,
        leave_one_out: bool = False,
        val_per_task: int | None = None,
        max_train_batches: int | None = None,
        num_workers: int = 1,
        seed: int | None = None,
        heldout_optional: bool = False,
        pin_memory: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.augment = AugmentConfig(augment_dihedral, augment_colours, augment_context_order)
        self.data_dir = _resolve(data_dir)
        self.seed = 307 if seed is None else seed

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "examples"):  # the CLI loads (and so checks) the data before the Trainer starts
            return
        hp = self.hparams
        self.split = task_split(hp.split, hp.split_seed)
        train = load_examples(self.data_dir / "tasks", self.split["train"])
        if hp.split == "by_example":
            cut = {t: int(len(p) * BY_EXAMPLE_TRAIN_FRACTION) for t, p in train.items()}
            val = {t: _new_keys(p[cut[t] :], p[: cut[t]]) for t, p in train.items()}
            train = {t: p[: cut[t]] for t, p in train.items()}
        else:
            val = load_examples(self.data_dir / "tasks", self.split["val"])
        heldout = load_examples(self.data_dir / "heldout", self._heldout_ids())
        self.examples = {
            "train": train,
            "val": val,
            "heldout": {t: heldout_slice(pairs, "select") for t, pairs in heldout.items()},
        }
        self.planners = {k: EpisodePlanner(v, hp.n_context) for k, v in self.examples.items()}

    def _heldout_ids(self) -> list[str]:
        """Training tasks with held-out examples: those data generation wrote (data/manifest.json, else the
        seed split's training tasks). A missing one is an error, since heldout_loss may be the monitored metric."""
        manifest = self.data_dir / "manifest.json"
        files = json.loads(manifest.read_text()).get("files", {}) if manifest.is_file() else {}
        written = {Path(f).stem for f in files if Path(f).parent.name == "heldout"} or set(
            task_split()["train"]
        )
        expected = [t for t in self.split["train"] if t in written]
        folder = self.data_dir / "heldout"
        missing = [t for t in expected if not (folder / f"{t}.json").is_file()]
        if missing and not self.hparams.heldout_optional:
            raise FileNotFoundError(
                f"{folder}: missing held-out file(s) {', '.join(f'{t}.json' for t in missing)}; run "
                "`python -m arclib data generate`, or pass --data.heldout-optional true to validate without them"
            )
        return [t for t in expected if t not in missing]

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
            curriculum_epochs=hp.curriculum_epochs if train else 0,
            leave_one_out=hp.leave_one_out and train,
        )
        return (ResumableLoader if train else DataLoader)(
            EpisodeDataset(self.examples[name]),
            batch_sampler=ResumableBatches(sampler, self._position) if train else sampler,
            collate_fn=collate,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            pin_memory=hp.pin_memory and torch.cuda.is_available(),
        )

    def _position(self) -> tuple[int, int]:
        """(epoch, batches of it trained on so far) as the Trainer counts them; (0, 0) without a Trainer."""
        if self.trainer is None:
            return 0, 0
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.processed

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


class ResumableBatches(Sampler):
    """The batches of a per-epoch batch sampler (any with `set_epoch` whose batches are a pure function of its seed
    and epoch), for the epoch the Trainer is in, less those a resumed run has already trained on.

    The epoch is read from the Trainer when iteration starts: Lightning builds the first data iterator of a
    resumed run (and DataLoader workers prefetch from it) before it calls `set_epoch`.
    """

    def __init__(self, batches: Sampler, position):
        self.batches, self.position = batches, position
        self.resume_at: tuple[int, int] | None = None

    def __iter__(self):
        epoch, done = self.position()
        self.batches.set_epoch(epoch)
        batches = list(self.batches)
        # Lightning may build the resumed epoch's iterator more than once (DataLoader workers); every build at
        # the restored position skips the batches already trained on, and the first build elsewhere ends it.
        if self.resume_at is not None and self.resume_at != (epoch, done):
            self.resume_at = None
        return iter(batches[done if self.resume_at is not None else 0 :])

    def __len__(self) -> int:
        return len(self.batches)


class ResumableLoader(DataLoader):
    """A DataLoader whose position Lightning saves in checkpoints (`state_dict`) and restores on resume."""

    def state_dict(self) -> dict:
        epoch, done = self.batch_sampler.position()
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.resume_at = (int(state["epoch"]), int(state["batches_done"]))


def _resolve(path: str | Path) -> Path:
    """Relative data paths resolve against the repository root, so notebooks (cwd notebooks/) and CLI agree."""
    path = Path(path)
    if path.is_absolute():
        return path
    return Path(__file__).resolve().parents[2] / path
