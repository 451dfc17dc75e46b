"""Callbacks for side effects of training that Lightning's own callbacks do not cover."""

from __future__ import annotations

from pathlib import Path

import lightning as L


class PeriodicCheckpoint(L.Callback):
    """Overwrite `<dirpath>/last.ckpt` every `every_n_steps` training steps, so a crash mid-epoch loses little.

    A separate callback (not a second ModelCheckpoint) so the epoch-end `last.ckpt` of ModelCheckpoint and this
    one are the same file: `--ckpt_path last` resumes from whichever was written most recently.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 50):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps == 0 and not trainer.sanity_checking:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")
