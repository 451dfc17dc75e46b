"""The five models of the ablation, by name, at three sizes, and one control.

Presets: "matched" (every model within 3% of the champion's ~1.6M parameters; the champion is Trial 69's
d_model 160, 4 heads, d_ff 640, 1 encoder and 3 decoder layers), "seed" (the decoder-only baseline at
~530K), "tiny" (tens of thousands of parameters, no dropout: tests and smoke runs).

Each arm differs from the previous one by one named change; the only other change is the champion's d_ff
(640, where Exp 0-2 have 704 to match its parameter count without a bridge). The control
`exp_2_perminv_dff640`, Exp 2 at d_ff 640, measures what that change alone does.
"""

from __future__ import annotations

from dataclasses import replace

import torch.nn as nn

from arclib.models.base import ArcModel
from arclib.models.champion import Champion, ChampionConfig
from arclib.models.decoder_only import DecoderOnly, DecoderOnlyConfig
from arclib.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from arclib.models.summary import trace_shapes

MODEL_NAMES = (
    "exp_-1_decoder_only",
    "exp_0_encoder_decoder",
    "exp_1_grid2d",
    "exp_2_perminv",
    "exp_3_champion",
)
CHAMPION = "exp_3_champion"
CONTROLS = ("exp_2_perminv_dff640",)
# What the ablation trains, in the study's order: the control (Exp 2 with the d_ff that parameter matching gives
# the champion) sits between Exp 2 and Exp 3, so that control -> Exp 3 is the pair encoder and bridge alone.
ABLATION_ARMS = MODEL_NAMES[:4] + CONTROLS + MODEL_NAMES[4:]

_TINY = dict(d_model=32, n_heads=2, d_ff=64, dropout=0.0)

# name -> (model class, {preset: config})
_REGISTRY: dict[str, tuple[type[ArcModel], dict]] = {
    "exp_-1_decoder_only": (
        DecoderOnly,
        {
            "matched": DecoderOnlyConfig(),
            "seed": DecoderOnlyConfig(d_model=128, n_heads=4, n_layers=3, d_ff=424, dropout=0.1),
            "tiny": DecoderOnlyConfig(n_layers=2, **_TINY),
        },
    ),
    "exp_0_encoder_decoder": (
        EncoderDecoder,
        {"matched": EncoderDecoderConfig(), "tiny": EncoderDecoderConfig(n_dec_layers=1, **_TINY)},
    ),
    "exp_1_grid2d": (
        EncoderDecoder,
        {
            "matched": EncoderDecoderConfig(grid2d=True),
            "tiny": EncoderDecoderConfig(n_dec_layers=1, grid2d=True, **_TINY),
        },
    ),
    "exp_2_perminv": (
        EncoderDecoder,
        {
            "matched": EncoderDecoderConfig(grid2d=True, perm_inv=True),
            "tiny": EncoderDecoderConfig(n_dec_layers=1, grid2d=True, perm_inv=True, **_TINY),
        },
    ),
    "exp_2_perminv_dff640": (
        EncoderDecoder,
        {
            "matched": EncoderDecoderConfig(d_ff=ChampionConfig.d_ff, grid2d=True, perm_inv=True),
            # the tiny champion keeps Exp 2's tiny d_ff, so here the control is Exp 2 (smoke runs test plumbing)
            "tiny": EncoderDecoderConfig(n_dec_layers=1, grid2d=True, perm_inv=True, **_TINY),
        },
    ),
    "exp_3_champion": (
        Champion,
        {"matched": ChampionConfig(), "tiny": ChampionConfig(n_dec_layers=1, **_TINY)},
    ),
}


def build_model(name: str, preset: str = "matched", **overrides) -> ArcModel:
    """A freshly initialised model; `overrides` replace config fields (e.g. dropout=0.0)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES + CONTROLS}")
    cls, presets = _REGISTRY[name]
    if preset not in presets:
        raise ValueError(f"model {name!r} has no preset {preset!r}; it has {tuple(presets)}")
    return cls(replace(presets[preset], **overrides))


def presets(name: str) -> tuple[str, ...]:
    return tuple(_REGISTRY[name][1])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_table() -> str:
    """Parameters of every non-tiny preset, and their ratio to the matched champion."""
    champion = count_parameters(build_model(CHAMPION))
    lines = [f"{'model':<24}{'preset':<9}{'params':>11}{'ratio':>8}"]
    for name in MODEL_NAMES + CONTROLS:
        for preset in presets(name):
            if preset == "tiny":
                continue
            n = count_parameters(build_model(name, preset))
            lines.append(f"{name:<24}{preset:<9}{n:>11,}{n / champion:>8.3f}")
    return "\n".join(lines)


__all__ = [
    "ABLATION_ARMS",
    "CONTROLS",
    "MODEL_NAMES",
    "ArcModel",
    "build_model",
    "count_parameters",
    "parameter_table",
    "presets",
    "trace_shapes",
]
