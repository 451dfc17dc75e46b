"""Checks of every run setting before anything is built or written, each failing with one line that names the
option, the value and what is accepted.

The same checks guard hyperparameters read back from a checkpoint: a checkpoint decides how much memory its model
takes, so its sizes are bounded before the model is built.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

from arclib.data.split import SPLIT_STRATEGIES
from arclib.models import _REGISTRY as MODEL_REGISTRY
from arclib.models import ABLATION_ARMS, presets

MAX_PARAMETERS = 50_000_000  # about 30 times the matched models; keeps a bad checkpoint from allocating GBs


class ConfigError(ValueError):
    """A run setting or stored hyperparameter is out of range, unknown or of the wrong type."""


def _choice(name: str, value, accepted) -> None:
    if value not in accepted:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, accepted))}")


def _at_least(name: str, value, low, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ConfigError(f"{name}: {value!r} must be a number >= {low}")


def _positive(name: str, value) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise ConfigError(f"{name}: {value!r} must be a finite number > 0")


def _estimated_parameters(config) -> int:
    """Attention and feed-forward weights of every layer (cross-attention counted twice): an upper-bound guide."""
    d, d_ff = config.d_model, config.d_ff
    layers = sum(getattr(config, f, 0) for f in ("n_layers", "n_enc_layers")) + 2 * getattr(
        config, "n_dec_layers", 0
    )
    return layers * (4 * d * d + 2 * d * d_ff)


def check_model(model_name, preset, model_overrides, where: str = "model") -> None:
    """Model name, preset and config overrides: known keys, sane types, bounded size."""
    _choice(f"{where}.model_name", model_name, ABLATION_ARMS)
    _choice(f"{where}.preset", preset, presets(model_name))
    overrides = model_overrides or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}.model_overrides: expected a mapping, got {type(overrides).__name__}")
    base = MODEL_REGISTRY[model_name][1][preset]
    fields = {f.name: f for f in dataclasses.fields(base)}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"{where}.model_overrides: unknown key {key!r}; known: {', '.join(fields)}")
        expected = type(getattr(base, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ConfigError(f"{where}.model_overrides.{key}: {value!r} is not a {expected.__name__}")
        if expected is int and value < 1:
            raise ConfigError(f"{where}.model_overrides.{key}: {value} must be >= 1")
        if key == "dropout" and not 0 <= value < 1:
            raise ConfigError(f"{where}.model_overrides.dropout: {value} must be in [0, 1)")
    config = dataclasses.replace(base, **overrides)
    if config.d_model % config.n_heads:
        raise ConfigError(f"{where}: d_model {config.d_model} is not divisible by n_heads {config.n_heads}")
    n = _estimated_parameters(config)
    if n > MAX_PARAMETERS:
        raise ConfigError(
            f"{where}: about {n:,} parameters (d_model {config.d_model}, d_ff {config.d_ff}); "
            f"the limit is {MAX_PARAMETERS:,}"
        )


def check_module_hparams(hparams: dict, where: str = "model") -> None:
    """ArcLitModule arguments: known keys (LightningCLI's own start with '_'), ranges, and the model's size."""
    from arclib.training.module import ArcLitModule

    accepted = set(inspect.signature(ArcLitModule.__init__).parameters) - {"self"}
    unknown = sorted(k for k in hparams if k not in accepted and not str(k).startswith("_"))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(accepted))}"
        )
    defaults = {
        k: p.default for k, p in inspect.signature(ArcLitModule.__init__).parameters.items() if k in accepted
    }
    hp = defaults | {k: v for k, v in hparams.items() if k in accepted}
    check_model(hp["model_name"], hp["preset"], hp["model_overrides"], where)
    _positive(f"{where}.lr", hp["lr"])
    betas = hp["betas"]
    if not (
        isinstance(betas, (list, tuple))
        and len(betas) == 2
        and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
    ):
        raise ConfigError(f"{where}.betas: {betas!r} must be two numbers in [0, 1)")
    _at_least(f"{where}.weight_decay", hp["weight_decay"], 0)
    _at_least(f"{where}.eta_min", hp["eta_min"], 0)
    for key in ("scheduler_t0", "scheduler_t_mult", "generate_every_n_epochs"):
        _at_least(f"{where}.{key}", hp[key], 1)
    _at_least(f"{where}.generate_per_task", hp["generate_per_task"], 0)
    _at_least(f"{where}.warmup_steps", hp["warmup_steps"], 0)


def check_data_hparams(data, where: str = "data") -> None:
    """ArcDataModule arguments (a Namespace or a dict)."""
    _choice(f"{where}.split", data["split"], SPLIT_STRATEGIES)
    _at_least(f"{where}.batch_size", data["batch_size"], 1)
    _at_least(f"{where}.n_context", data["n_context"], 1)
    _at_least(f"{where}.num_workers", data["num_workers"], 0)
    for key in ("train_per_task", "val_per_task", "max_train_batches"):
        _at_least(f"{where}.{key}", data[key], 1, optional=True)
    _at_least(f"{where}.curriculum_epochs", data["curriculum_epochs"], 0)
    if data["curriculum_epochs"] and data["train_per_task"] is None:
        raise ConfigError(
            f"{where}.curriculum_epochs: {data['curriculum_epochs']} needs {where}.train_per_task (the queries "
            "per task and epoch the curriculum draws from the smallest examples)"
        )
