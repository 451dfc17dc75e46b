"""Pictures are checked by their pixels: palette colours, orientation and the wrong-cell mask."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from arclib.data.arc import load_arc_task
from arclib.data.tokens import EOS, ROW, grid_tokens
from arclib.viz import browser as browser_module
from arclib.viz.browser import IN_MEMORY, REAL_ARC, TaskBrowser, context_indices
from arclib.viz.grids import (
    ARC_COLOURS,
    draw_grid,
    new_figure,
    plot_episode,
    plot_gallery,
    plot_prediction,
    plot_task,
    prediction_status,
    wrong_cells,
)
from arclib.viz.live import LivePlotCallback, plot_learning_curves, read_metrics_csv

matplotlib.use("Agg")  # pixel tests need the same raster backend everywhere

# helpers ---------------------------------------------------------------------------------------------------


def render(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)  # figures come back closed in pyplot, with a bare canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def cell_pixel(image: np.ndarray, ax, shape: tuple[int, int], row: int, col: int) -> tuple[int, ...]:
    """RGBA at the centre of cell (row, col), located from the axes box alone (not the data transform),
    so a flipped or rescaled image would show up as a wrong colour."""
    h, w = shape
    box = ax.get_window_extent()
    x = box.x0 + (col + 0.5) * box.width / w
    y = box.y1 - (row + 0.5) * box.height / h  # display y grows upwards; row 0 is the top of the box
    return tuple(image[image.shape[0] - 1 - int(round(y)), int(round(x))])


def rgba255(colour: str) -> tuple[int, ...]:
    return tuple(int(round(c * 255)) for c in to_rgba(colour))


def panel_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


class FakeModel(torch.nn.Module):
    """Writes the same token sequence for every episode, like a model that always answers `grid`."""

    def __init__(self, grid: np.ndarray | None):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # predict_grids reads the device from a parameter
        self.tokens = (
            np.concatenate([grid_tokens(grid)[0], [EOS]]) if grid is not None else np.array([ROW, ROW, EOS])
        )  # ROW with no cells is not a valid grid

    def generate(self, batch, max_len=None):
        tokens = torch.as_tensor(self.tokens).expand(len(batch), -1)
        return tokens, torch.full((len(batch),), -1.5)


# grids -----------------------------------------------------------------------------------------------------


def test_colormap_maps_each_colour_to_its_palette_entry():
    grid = np.arange(10).reshape(2, 5)
    for values in (grid, grid[:, :1] * 0 + 3):  # also a one-colour grid: no rescaling to its own min..max
        fig, axes = new_figure(1, 1, panel_inches=5)
        draw_grid(axes[0, 0], values)
        image = render(fig)
        for r in range(values.shape[0]):
            for c in range(values.shape[1]):
                got = cell_pixel(image, axes[0, 0], values.shape, r, c)
                assert got == rgba255(ARC_COLOURS[values[r, c]]), (r, c, values[r, c])


def test_row_zero_is_drawn_at_the_top_and_column_zero_at_the_left():
    grid = np.zeros((4, 3), dtype=np.int8)
    grid[0, 0] = 2  # red top-left
    grid[3, 2] = 1  # blue bottom-right
    fig, axes = new_figure(1, 1, panel_inches=5)
    draw_grid(axes[0, 0], grid, "g")
    image = render(fig)
    assert cell_pixel(image, axes[0, 0], grid.shape, 0, 0) == rgba255(ARC_COLOURS[2])
    assert cell_pixel(image, axes[0, 0], grid.shape, 3, 2) == rgba255(ARC_COLOURS[1])
    assert cell_pixel(image, axes[0, 0], grid.shape, 3, 0) == rgba255(ARC_COLOURS[0])
    assert axes[0, 0].get_title() == "g  4x3"


def test_wrong_cell_mask_marks_exactly_the_wrong_cells():
    target = np.arange(12).reshape(3, 4) % 10
    prediction = target.copy()
    wrong = {(0, 1), (2, 3), (1, 0)}
    for r, c in wrong:
        prediction[r, c] = (prediction[r, c] + 1) % 10
    mask = wrong_cells(prediction, target)
    assert {tuple(map(int, rc)) for rc in np.argwhere(mask)} == wrong
    assert prediction_status(prediction, target) == "wrong: 3 cells"
    assert prediction_status(target, target) == "exact match"

    fig = plot_prediction(target, target, prediction, "t")
    mask_ax = fig.axes[3]
    image = render(fig)
    for r in range(3):
        for c in range(4):
            red = cell_pixel(image, mask_ax, mask.shape, r, c) == rgba255("#FF0000")
            assert red == ((r, c) in wrong), (r, c)
    assert mask_ax.get_title() == "wrong: 3 cells"


def test_shape_mismatch_and_invalid_prediction_are_labelled():
    target = np.zeros((3, 3), dtype=np.int8)
    fig = plot_prediction(target, target, np.zeros((3, 4), dtype=np.int8))
    pred_ax, diff_ax = fig.axes[2], fig.axes[3]
    assert pred_ax.get_title() == "SHAPE MISMATCH 3x4 vs target 3x3"
    assert to_rgba(pred_ax.title.get_color())[:3] != (0, 0, 0)  # drawn in the alert colour
    assert to_rgba(pred_ax.spines["top"].get_edgecolor()) == to_rgba("#D00000")
    assert any("shape mismatch" in t for t in panel_texts(diff_ax))
    assert prediction_status(np.zeros((3, 4)), target) == "shape mismatch 3x4 vs target 3x3"

    fig = plot_prediction(target, target, None)
    assert "no valid grid" in panel_texts(fig.axes[2])
    assert not fig.axes[2].images  # an empty panel, no picture
    assert prediction_status(None, target) == "no valid grid"


def test_task_episode_and_gallery_figures_have_the_expected_panels():
    task = load_arc_task("05269061")
    fig = plot_task(task)
    assert len(fig.axes) == 2 * (len(task.train) + len(task.test))
    assert fig.axes[0].get_title() == "demo 0 in  7x7"
    assert len(plot_task(task.train, "pairs").axes) == 2 * len(task.train)

    ep = browser_module.Episode("t", task.train[:2], task.test[0][0], None)
    fig = plot_episode(ep)
    assert len(fig.axes) == 6 and "?" in panel_texts(fig.axes[5])

    x = np.zeros((2, 2), dtype=np.int8)
    fig = plot_gallery([(x, x, x, "a"), (x, x, None), (x, x, np.zeros((1, 2)))])
    assert len(fig.axes) == 12
    assert fig.axes[0].get_title() == "a\ninput  2x2"


# live curves -----------------------------------------------------------------------------------------------


def fake_trainer(epoch: int, metrics: dict, sanity: bool = False):
    return SimpleNamespace(
        sanity_checking=sanity,
        is_global_zero=True,
        current_epoch=epoch,
        global_step=10 * (epoch + 1),
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
    )


def test_live_callback_records_history_and_draws_nothing_outside_a_notebook(capsys):
    cb = LivePlotCallback()
    cb.on_validation_end(fake_trainer(0, {"val_loss": 9.0}, sanity=True), None)  # sanity check: not recorded
    cb.on_validation_end(fake_trainer(0, {"train_loss": 2.0, "val_loss": 1.5, "other": 3.0}), None)
    cb.on_validation_end(fake_trainer(1, {"train_loss": 1.0, "val_loss": 1.2, "val_gen_exact": 0.25}), None)
    assert cb.history == [
        {"epoch": 0, "step": 10, "train_loss": 2.0, "val_loss": 1.5},
        {"epoch": 1, "step": 20, "train_loss": 1.0, "val_loss": pytest.approx(1.2), "val_gen_exact": 0.25},
    ]
    assert cb._output is None and capsys.readouterr().out == ""
    fig = cb.figure()
    labels = {line.get_label() for ax in fig.axes for line in ax.lines}
    assert labels == {"train_loss", "val_loss", "val_gen_exact"}


class _TinyModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_live_callback_in_a_real_trainer_records_one_entry_per_epoch():
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    cb = LivePlotCallback()
    trainer = L.Trainer(
        max_epochs=3,
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(_TinyModule(), data, data)
    assert [h["epoch"] for h in cb.history] == [0, 1, 2]
    assert all({"train_loss", "val_loss"} <= h.keys() for h in cb.history)


def test_plot_learning_curves_reads_sparse_csvlogger_files(tmp_path):
    csv_a = tmp_path / "a.csv"
    csv_a.write_text(
        "epoch,step,train_loss,val_loss,val_gen_exact\n"
        "0,4,2.0,,\n"
        "0,9,1.0,,\n"
        "0,9,,1.4,0.0\n"
        "1,14,0.5,,\n"
        "1,19,,1.1,0.5\n"
    )
    csv_b = tmp_path / "b.csv"
    csv_b.write_text("epoch,step,val_loss,heldout_loss\n0,9,2.0,\n0,9,,2.5\n")
    curves = read_metrics_csv(csv_a)
    np.testing.assert_allclose(curves["train_loss"][1], [1.5, 0.5])  # per-step values averaged per epoch
    np.testing.assert_array_equal(curves["val_loss"][0], [0, 1])
    assert "heldout_loss" not in curves
    fig = plot_learning_curves({"a": csv_a, "b": csv_b})
    labels = {line.get_label() for ax in fig.axes for line in ax.lines}
    assert labels == {"a: train_loss", "a: val_loss", "a: val_gen_exact", "b: val_loss", "b: heldout_loss"}


# browser ---------------------------------------------------------------------------------------------------

TASK = "05269061"


@pytest.fixture(scope="module")
def examples():
    """Six examples with distinct random inputs (the output: the input flipped upside down)."""
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 10, size=(3 + k % 3, 4), dtype=np.int8) for k in range(6)]
    return {"train": {TASK: [(x, x[::-1].copy()) for x in inputs]}}


def test_context_never_contains_the_query():
    for query in range(5):
        for seed in range(20):
            ctx = context_indices(5, query, 2, seed)
            assert query not in ctx and len(set(ctx)) == 2 and all(0 <= i < 5 for i in ctx)
    with pytest.raises(ValueError):
        context_indices(2, 0, 2, 0)


def test_browser_episodes_take_context_from_other_examples(examples, tmp_path):
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path, models={"fake": FakeModel(None)})
    pairs = examples["train"][TASK]
    assert browser.index.max == len(pairs) - 1
    for index in range(len(pairs)):
        ep = browser.select(split="train", task=TASK, index=index).episode()
        assert np.array_equal(ep.query_input, pairs[index][0])
        assert len(ep.context) == 2
        assert not any(np.array_equal(x, ep.query_input) for x, _ in ep.context)

    ep = browser.select(split=REAL_ARC, task=TASK, index=0).episode()
    task = load_arc_task(TASK)
    assert np.array_equal(ep.query_input, task.test[0][0]) and np.array_equal(
        ep.query_output, task.test[0][1]
    )
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(ep.context, task.train[:2]))
    with pytest.raises(ValueError, match="out of range"):
        browser.select(index=5)


def test_browser_predict_shows_the_result(examples, tmp_path):
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path)
    browser.select(split="train", task=TASK, index=3)
    target = browser.episode().query_output
    wrong = target.copy()
    wrong[0, 0], wrong[-1, -1] = (wrong[0, 0] + 1) % 10, (wrong[-1, -1] + 1) % 10
    cases = {
        "exact": (target, "exact match"),
        "two_wrong": (wrong, "wrong: 2 cells"),
        "too_wide": (np.zeros((target.shape[0], target.shape[1] + 1), np.int8), "shape mismatch"),
        "invalid": (None, "no valid grid"),
    }
    browser.models = {name: FakeModel(grid) for name, (grid, _) in cases.items()}
    browser.refresh_experiments()
    for name, (_, status) in cases.items():
        browser.select(experiment=name)
        assert browser.checkpoint.value == IN_MEMORY
        result = browser.predict()
        assert result.status.startswith(status)
        assert status in browser.status.value
        assert "log-probability -1.50" in browser.status.value
        pred_ax, mask_ax = browser.last_figure.axes[2:4]
        shown = (
            pred_ax.get_title() + mask_ax.get_title() + " ".join(panel_texts(pred_ax) + panel_texts(mask_ax))
        )
        assert status in shown.lower() or status in shown
    assert browser.button.description == "Predict"
    assert "arclib-prediction" in browser.output._dom_classes


def test_browser_lists_checkpoints_and_reports_problems_in_the_status(tmp_path):
    (tmp_path / "exp_1").mkdir()
    for name in ("exp_1-epoch=03-val_loss=0.5.ckpt", "last.ckpt", "exp_1-epoch=01-val_loss=0.9.ckpt"):
        (tmp_path / "exp_1" / name).write_bytes(b"")
    (tmp_path / "empty_experiment").mkdir()
    browser = TaskBrowser(checkpoint_dir=tmp_path, data_dir=tmp_path / "no_data")
    assert browser.experiments() == ["exp_1"]
    assert browser.checkpoint.options[0] == "last.ckpt" and len(browser.checkpoint.options) == 3
    assert "missing" in browser.status.value  # no data files: said in the status, not raised in a callback
    browser._on_click(browser.button)  # the button's handler shows the failure instead of losing it
    assert "FileNotFoundError" in browser.status.value


def test_browser_loads_a_lightning_checkpoint_and_predicts(examples, tmp_path):
    from arclib.training.module import ArcLitModule

    module = ArcLitModule("exp_3_champion", preset="tiny")
    (tmp_path / "exp_3_champion").mkdir()
    torch.save(
        {
            "state_dict": module.state_dict(),
            ArcLitModule.CHECKPOINT_HYPER_PARAMS_KEY: dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        tmp_path / "exp_3_champion" / "last.ckpt",
    )
    browser = TaskBrowser(examples=examples, checkpoint_dir=tmp_path)
    browser.select(experiment="exp_3_champion", checkpoint="last.ckpt")
    loaded = browser.model()
    assert type(loaded) is type(module.model) and browser.model() is loaded  # loaded once, then cached
    for name, value in module.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    result = browser.predict()
    assert result.status.split()[0] in ("exact", "wrong:", "shape", "no")
    assert result.status in browser.status.value


def test_key_count_plot_marks_closed_world_tasks():
    from arclib.viz.stats import plot_key_counts

    figures = {
        "a": {"train_keys": 400, "select_keys": 50, "report_keys": 50},
        "b": {"train_keys": 105, "select_keys": 0, "report_keys": 0},
    }
    fig = plot_key_counts(figures, {"b": True})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b  (closed world)"]
    assert sorted(round(p.get_width()) for p in ax.patches) == [0, 0, 50, 50, 105, 400]
    matplotlib.pyplot.close(fig)
