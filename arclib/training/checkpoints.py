"""Safe checkpoints: atomic writes, and loading that never executes pickled code.

Lightning writes checkpoints through `AtomicCheckpointIO` (configs/base.yaml, trainer.plugins): the bytes go to a
temporary file that replaces the target only once complete, so a kill mid-write leaves the previous good file.
Every load goes through `torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import inspect
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from arclib.fileio import atomic_write_bytes


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt, unsafe or not an arclib checkpoint."""


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive; anything else is damaged
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint (not a torch zip archive)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused to load: it holds pickled objects other than tensors and plain containers, "
            f"which could run arbitrary code ({reason})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint(path, map_location or "cpu")


def load_model(path: str | os.PathLike):
    """The ArcLitModule saved in a checkpoint, in eval mode on the CPU."""
    from arclib.training.module import ArcLitModule

    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "model_name" not in hparams:
        raise CheckpointError(f"{path}: no arclib hyper-parameters; was it written by arclib?")
    accepted = inspect.signature(ArcLitModule.__init__).parameters
    module = ArcLitModule(
        **{k: v for k, v in hparams.items() if k in accepted}
    )  # LightningCLI adds its own keys
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {hparams['model_name']} ({e})") from None
    return module.eval()
