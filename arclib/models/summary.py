"""Tensor shapes through one forward pass, for the model-construction notebook."""

from __future__ import annotations

import torch


def _shape(output) -> str:
    if torch.is_tensor(output):
        return str(tuple(output.shape))
    if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
        return str(tuple(output[0].shape))
    return type(output).__name__


def trace_shapes(model: torch.nn.Module, batch, depth: int = 2) -> list[tuple[str, str]]:
    """(module name, output shape) of every submodule up to `depth` levels deep, in call order."""
    rows: list[tuple[str, str]] = []
    hooks = [
        module.register_forward_hook(lambda m, args, out, name=name: rows.append((name, _shape(out))))
        for name, module in model.named_modules()
        if name and name.count(".") < depth
    ]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return rows
