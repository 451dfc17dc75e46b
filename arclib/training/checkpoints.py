"""Safe checkpoints: atomic writes, finite weights only, a hash of the tensors, and loading that never executes
pickled code.

Lightning writes checkpoints through `AtomicCheckpointIO` (configs/base.yaml, trainer.plugins): the bytes go to a
temporary file that replaces the target only once complete, so a kill mid-write leaves the previous good file.
It refuses to write weights that are not finite, so a diverged run never replaces a good `last.ckpt`, and it
records a SHA-256 of every tensor of the state dict, which the loader verifies: damaged tensor bytes are caught.
Every load goes through `torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from arclib.fileio import atomic_write_bytes
from arclib.training.validation import ConfigError, check_module_hparams

HASH_KEY = "arclib_state_sha256"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt, unsafe or not an arclib checkpoint."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss, gradient, weight or validation metric; the run stops, unsaved."""


def state_hash(state_dict: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def non_finite_tensors(state_dict: dict) -> list[str]:
    return [
        key
        for key, t in state_dict.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


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
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    state = checkpoint["state_dict"]
    recorded = checkpoint.get(HASH_KEY)  # checkpoints written before the hash was recorded have none
    if recorded is not None and recorded != state_hash(state):
        raise CheckpointError(
            f"{path}: damaged checkpoint: its tensors do not match the SHA-256 recorded at save"
        )
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(f"{path}: refused: non-finite weights in {len(bad)} tensor(s), e.g. {bad[0]}")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        state = checkpoint.get("state_dict", {})
        bad = non_finite_tensors(state)
        if bad:
            raise DivergenceError(
                f"training diverged: non-finite weights at global step {checkpoint.get('global_step')} "
                f"({len(bad)} tensor(s), e.g. {bad[0]}); {Path(path).name} was not written"
            )
        buffer = io.BytesIO()
        torch.save({**checkpoint, HASH_KEY: state_hash(state)}, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_checkpoint(path, map_location or "cpu")


def load_model(path: str | os.PathLike):
    """The ArcLitModule saved in a checkpoint, in eval mode on the CPU; its hyperparameters are checked first."""
    from arclib.training.module import ArcLitModule

    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "model_name" not in hparams:
        raise CheckpointError(f"{path}: no arclib hyper-parameters; was it written by arclib?")
    try:
        check_module_hparams(hparams, where=f"{path}: hyper_parameters")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    module = ArcLitModule(**{k: v for k, v in hparams.items() if not k.startswith("_")})
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {hparams['model_name']} ({e})") from None
    return module.eval()
