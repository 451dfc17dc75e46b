"""Callbacks (and a logger) for the parts of a run that Lightning's own do not cover: mid-epoch checkpoints,
reproducible randomness across a resume, one run per checkpoint folder, and CSV logs that a resume appends to.
"""

from __future__ import annotations

import csv
import fcntl
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from arclib.fileio import remove_stale_temporaries

LOG_VERSION_KEY = "arclib_log_version"


class PeriodicCheckpoint(L.Callback):
    """Overwrite `<dirpath>/last.ckpt` every `every_n_steps` training steps, so a crash mid-epoch loses little.

    A separate callback (not a second ModelCheckpoint) so the epoch-end `last.ckpt` of ModelCheckpoint and this
    one are the same file: `--ckpt_path last` resumes from whichever was written most recently. An epoch's last
    batch is skipped: resumed from there, Lightning would find the epoch's batches used up and end it without
    validation; ModelCheckpoint writes `last.ckpt` once that validation is done.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 50):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if trainer.global_step % self.every_n_steps == 0 and not last_batch and not trainer.sanity_checking:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")


class StepSeed(L.Callback):
    """Seed torch's generator from (seed, global step, rank) before every training step.

    Dropout then draws the same masks at a step whether the run got there in one go or was resumed from a
    checkpoint: nothing that happened before the step (building a data iterator, validation) can shift them.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        entropy = [self.seed, trainer.global_step, trainer.global_rank]
        torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))


class RunLockedError(RuntimeError):
    """Another process is training into the same checkpoint folder."""


_HELD_LOCKS: dict[Path, int] = {}  # lock file -> open descriptor, for the locks this process holds


def _lock_path(folder: str | os.PathLike) -> Path:
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def acquire_run_lock(folder: str | os.PathLike) -> Path:
    """Hold an exclusive lock on `.<name>.lock` beside `folder` until released or the process ends, then delete
    the temporary files a killed checkpoint write left in `folder`.

    Beside the folder, not in it, so a new run's checkpoint folder stays empty. Re-entrant within one process
    (a notebook that runs its training cell again); another process gets RunLockedError naming the holder.
    """
    path = _lock_path(folder)
    if path in _HELD_LOCKS:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLockedError(
            f"{folder}: another fit of this experiment and seed is running (pid {holder}, lock {path}); "
            "wait for it to end, or give this run another --output-root or --seed-everything"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD_LOCKS[path] = fd
    remove_stale_temporaries(folder)
    return path


def release_run_lock(folder: str | os.PathLike) -> None:
    fd = _HELD_LOCKS.pop(_lock_path(folder), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


class RunLock(L.Callback):
    """One fit at a time per checkpoint folder (`acquire_run_lock`), and the log version kept in every
    checkpoint so that a resume appends to its own run's logs."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        if stage == "fit" and trainer.global_rank == 0:
            acquire_run_lock(self.dirpath)

    def teardown(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        if stage == "fit" and trainer.global_rank == 0:
            release_run_lock(self.dirpath)

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        if trainer.global_rank == 0:  # Lightning skips teardown after an exception
            release_run_lock(self.dirpath)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        if trainer.loggers:
            checkpoint[LOG_VERSION_KEY] = str(trainer.loggers[0].version)


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning's writer deletes an existing metrics.csv; a resumed run keeps it and appends under its header.
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class AppendingCSVLogger(CSVLogger):
    """CSVLogger that appends to the metrics.csv of its version folder instead of deleting it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
