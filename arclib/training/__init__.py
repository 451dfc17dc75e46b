"""Lightning training: the module, the datamodule, the CLI and safe checkpoints."""

from arclib.training.checkpoints import CheckpointError, load_checkpoint, load_model
from arclib.training.cli import load_experiment

__all__ = ["CheckpointError", "load_checkpoint", "load_experiment", "load_model"]
