"""Plots of data statistics and of the 2D positions the models compute."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from arclib.data.tokens import BOS, decoder_positions, grid_tokens


def plot_task_statistics(rows: list[dict]):
    """Left: colour share per task (tasks x colours). Right: mean cells per example."""
    tasks = [r["task"] for r in rows]
    share = np.stack([r["colour_share"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(12, 0.35 * len(rows) + 1.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    im = ax1.imshow(share, cmap="viridis", aspect="auto")
    ax1.set(
        xticks=range(10), yticks=range(len(tasks)), yticklabels=tasks, xlabel="colour", title="colour share"
    )
    fig.colorbar(im, ax=ax1, fraction=0.04)
    ax2.barh(tasks, [r["mean_cells"] for r in rows], color="#0074D9")
    ax2.invert_yaxis()
    ax2.set(xlabel="mean cells per example (input + output)", title="grid sizes")
    fig.tight_layout()
    return fig


def plot_grid_positions(height: int = 3, width: int = 7):
    """The (row, col) each token of an h x w grid gets: in the encoder, and as the decoder writes it."""
    grid = np.zeros((height, width), dtype=np.int8)
    tokens, rows, cols = grid_tokens(grid)
    dec_row, dec_col = decoder_positions(torch.tensor([[BOS, *tokens]]))
    fig, axes = plt.subplots(2, 2, figsize=(10, 1.2 * height + 2))
    for ax, values, title in [
        (axes[0, 0], rows, "encoder row"),
        (axes[0, 1], cols, "encoder col (ROW token at col = width)"),
        (axes[1, 0], dec_row[0, :-1].numpy(), "decoder row, from ROW tokens written"),
        (axes[1, 1], dec_col[0, :-1].numpy(), "decoder col, from ROW tokens written"),
    ]:
        table = values.reshape(height, width + 1)
        ax.imshow(table, cmap="Blues")
        for (i, j), v in np.ndenumerate(table):
            ax.text(j, i, int(v), ha="center", va="center")
        ax.set(title=title, xticks=[], yticks=[])
    fig.suptitle(f"2D positions of a {height}x{width} grid (last column: the ROW token)")
    fig.tight_layout()
    return fig


def plot_key_counts(figures: dict[str, dict], exhausted: dict[str, bool]):
    """Distinct canonical keys per task in training and in each held-out half (from `check_data().figures`);
    closed-world tasks (their whole space drawn: `exhausted`) are marked."""
    tasks = sorted(figures)
    y = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(tasks) + 1.5))
    left = np.zeros(len(tasks))
    for name, colour in (("train_keys", "#0074D9"), ("select_keys", "#FF851B"), ("report_keys", "#2ECC40")):
        values = np.array([figures[t][name] for t in tasks])
        ax.barh(y, values, left=left, color=colour, label=name.replace("_keys", ""))
        left += values
    labels = [f"{t}  (closed world)" if exhausted.get(t) else t for t in tasks]
    ax.set(yticks=y, yticklabels=labels, xlabel="distinct examples up to colour relabelling and rotation")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title("Distinct examples per task: training and the two held-out halves share no key")
    fig.tight_layout()
    return fig


LAYER_FIELDS = {"n_enc_layers": "encoder", "n_dec_layers": "decoder", "n_layers": "decoder"}


def model_table() -> str:
    """Markdown: every non-tiny preset's sizes (d_model, heads, layers, d_ff), parameters and ratio to the
    matched champion's parameter count."""
    from arclib.models import ABLATION_ARMS, CHAMPION, build_model, count_parameters, presets

    champion = count_parameters(build_model(CHAMPION))
    lines = ["| model | preset | d_model | heads | layers | d_ff | parameters | ratio to champion |",
             "|---|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    for name in ABLATION_ARMS:
        for preset in presets(name):
            if preset == "tiny":
                continue
            model = build_model(name, preset)
            c = model.config
            layers = " + ".join(f"{getattr(c, k)} {v}" for k, v in LAYER_FIELDS.items() if hasattr(c, k))
            n = count_parameters(model)
            lines.append(
                f"| {name} | {preset} | {c.d_model} | {c.n_heads} | {layers} | {c.d_ff} | {n:,} | {n / champion:.3f} |"
            )
    return "\n".join(lines)
