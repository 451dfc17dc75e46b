"""An ipywidgets browser: pick a split, task, example and checkpoint, press Predict, see the generated grid.

Plain ipywidgets 8 (Dropdown, IntSlider, Button, HTML, Output), so it runs in JupyterLab with no extension
build. The widgets only call methods (`select`, `episode`, `predict`) that tests drive without a browser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from IPython.display import display
from matplotlib.figure import Figure

from arclib.data.arc import load_arc_task
from arclib.data.generate import DATA_DIR, load_examples
from arclib.data.split import task_split
from arclib.data.tasks import TASK_IDS
from arclib.data.tokens import Episode, tokens_to_grid
from arclib.evaluation.predict import generate_tokens
from arclib.viz.grids import invalid_reason, plot_episode, plot_prediction, prediction_status

REAL_ARC = "real ARC"
SPLITS = ("train", "val", "heldout", REAL_ARC)
IN_MEMORY = "(in memory)"
CHECKPOINT_DIR = DATA_DIR.parent / "checkpoints"
# ModelCheckpoint names carry the monitored loss: "<experiment>-epoch=05-heldout_loss=0.3814.ckpt".
_MONITORED = re.compile(r"-(?:val_loss|heldout_loss)=([0-9.]+)\.ckpt$")

Pairs = list[tuple[np.ndarray, np.ndarray]]


def context_indices(n_examples: int, query: int, n_context: int, seed: int) -> list[int]:
    """n_context distinct examples other than `query`, the same for every call with (query, seed)."""
    if n_examples < n_context + 1:
        raise ValueError(f"{n_examples} examples; an episode needs {n_context} context pairs plus the query")
    rng = np.random.default_rng([seed, query])
    others = rng.choice(n_examples - 1, size=n_context, replace=False)
    return [int(i + (i >= query)) for i in others]  # shift past the query so it is never its own context


def load_checkpoint_model(path: str | Path):
    """The network inside a checkpoint, on the CPU, loaded without executing pickled code."""
    from arclib.training.checkpoints import load_model

    return load_model(path).model


def checkpoint_order(name: str) -> tuple[int, float, str]:
    """Sort key: checkpoints by their monitored loss (best first), then any others, last.ckpt at the end."""
    match = _MONITORED.search(name)
    if match:
        return (0, float(match.group(1)), name)
    return (2 if Path(name).name == "last.ckpt" else 1, 0.0, name)


def _set_options(dropdown: widgets.Dropdown, options: list[str]) -> None:
    """New options, keeping the current choice if it is still offered, else the first (ipywidgets leaves None)."""
    current = dropdown.value
    dropdown.options = options
    dropdown.value = current if current in options else (options[0] if options else None)


@dataclass
class PredictionResult:
    episode: Episode
    prediction: np.ndarray | None
    logprob: float
    status: str  # "exact match", "wrong: k cells", "shape mismatch ...", "no valid grid: <why>"
    tokens: list[int] | None = None  # what the model wrote


class TaskBrowser:
    """Browse episodes and predictions. `models` ({name: network}) adds in-memory models to the experiments;
    `examples` ({split: {task_id: pairs}}) replaces the data files of those splits (tests, smoke notebooks).

    Generated splits: the query is example `index`, its context `n_context` other examples of the task chosen
    by (seed, index). Real ARC: the context is all the task's demos (as `python -m arclib evaluate` shows them),
    the query its test pair `index`. Checkpoints are found under checkpoint_dir/<experiment>/ and its
    seed_<seed>/ folders; the one with the lowest monitored loss is chosen by default.
    """

    def __init__(
        self,
        data_dir: str | Path = DATA_DIR,
        checkpoint_dir: str | Path = CHECKPOINT_DIR,
        models: dict | None = None,
        examples: dict[str, dict[str, Pairs]] | None = None,
        split_strategy: str = "seed",
        n_context: int = 2,
        seed: int = 0,
    ):
        self.data_dir = Path(data_dir)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.models = dict(models or {})
        self.injected = examples or {}
        self.split_ids = task_split(split_strategy)
        self.n_context, self.seed = n_context, seed
        self._pairs_cache: dict[tuple[str, str], Pairs] = {}
        self._model_cache: dict[Path, object] = {}
        self.last_result: PredictionResult | None = None
        self.last_figure: Figure | None = None

        self.split = widgets.Dropdown(options=SPLITS, value=SPLITS[0], description="split")
        self.task = widgets.Dropdown(description="task")
        self.index = widgets.IntSlider(min=0, max=0, description="example", continuous_update=False)
        self.experiment = widgets.Dropdown(description="experiment")
        self.checkpoint = widgets.Dropdown(description="checkpoint", layout=widgets.Layout(width="28em"))
        self.button = widgets.Button(description="Predict", button_style="primary", icon="play")
        self.status = widgets.HTML()
        self.status.add_class("arclib-status")
        self.output = widgets.Output()
        self.output.add_class("arclib-prediction")

        self.split.observe(lambda _: self._fill_tasks(), names="value")
        self.task.observe(lambda _: self._fill_indices(), names="value")
        self.experiment.observe(lambda _: self._fill_checkpoints(), names="value")
        for widget in (self.split, self.task, self.index, self.experiment, self.checkpoint):
            widget.observe(lambda _: self._clear_result(), names="value")  # no old picture under a new choice
        self.button.on_click(self._on_click)
        self._fill_tasks()
        self.refresh_experiments()
        if not self.experiments():
            self._show_status(
                f"no checkpoints under {self.checkpoint_dir}: train an experiment first (notebooks 03-07 or "
                "python -m arclib fit); you can still browse the episodes",
                "#D00000",
            )
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.split, self.task, self.index]),
                widgets.HBox([self.experiment, self.checkpoint, self.button]),
                self.status,
                self.output,
            ]
        )
        self.widget.add_class("arclib-task-browser")  # CSS handles for browser tests

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # data ------------------------------------------------------------------------------------------------

    def task_ids(self, split: str) -> list[str]:
        if split in self.injected:
            return sorted(self.injected[split])
        if split == REAL_ARC:
            return sorted(TASK_IDS)
        return list(self.split_ids["train" if split == "heldout" else split])

    def pairs(self, split: str, task_id: str) -> Pairs:
        """The task's examples in a generated split (loaded once), or a real task's test pairs."""
        key = (split, task_id)
        if key not in self._pairs_cache:
            if split in self.injected:
                self._pairs_cache[key] = self.injected[split][task_id]
            elif split == REAL_ARC:
                self._pairs_cache[key] = load_arc_task(task_id).test
            else:
                folder = self.data_dir / ("heldout" if split == "heldout" else "tasks")
                self._pairs_cache[key] = load_examples(folder, [task_id])[task_id]
        return self._pairs_cache[key]

    def episode(self) -> Episode:
        split, task_id, index = self.split.value, self.task.value, self.index.value
        if split == REAL_ARC and split not in self.injected:
            task = load_arc_task(task_id)
            x, y = task.test[index]
            return Episode(task_id, list(task.train), x, y)
        pairs = self.pairs(split, task_id)
        context = context_indices(len(pairs), index, self.n_context, self.seed)
        x, y = pairs[index]
        return Episode(task_id, [pairs[i] for i in context], x, y)

    # models ----------------------------------------------------------------------------------------------

    def experiments(self) -> list[str]:
        """In-memory models, then the folders of checkpoint_dir holding .ckpt files (or seed_*/ folders that do)."""
        on_disk = []
        if self.checkpoint_dir.is_dir():
            on_disk = sorted(
                p.name for p in self.checkpoint_dir.iterdir() if p.is_dir() and self.checkpoints(p.name)
            )
        return list(self.models) + [e for e in on_disk if e not in self.models]

    def checkpoints(self, experiment: str | None) -> list[str]:
        """Checkpoint paths relative to the experiment's folder ("seed_307/x.ckpt" or "x.ckpt"), best first."""
        if experiment is None:
            return []
        if experiment in self.models:
            return [IN_MEMORY]
        folder = self.checkpoint_dir / experiment
        paths = [*folder.glob("seed_*/*.ckpt"), *folder.glob("*.ckpt")]
        return sorted((p.relative_to(folder).as_posix() for p in paths), key=checkpoint_order)

    def model(self):
        experiment, checkpoint = self.experiment.value, self.checkpoint.value
        if experiment is None or checkpoint is None:
            raise RuntimeError(
                f"no model: no experiment with checkpoints in {self.checkpoint_dir} and none in memory"
            )
        if experiment in self.models:
            return self.models[experiment]
        path = self.checkpoint_dir / experiment / checkpoint
        if path not in self._model_cache:
            self._model_cache[path] = load_checkpoint_model(path)
        return self._model_cache[path]

    # widget state ----------------------------------------------------------------------------------------

    def refresh_experiments(self) -> None:
        """Re-read checkpoint_dir and `models` (after training wrote new checkpoints)."""
        _set_options(self.experiment, self.experiments())
        self._fill_checkpoints()

    def _fill_tasks(self) -> None:
        _set_options(self.task, self.task_ids(self.split.value))
        self._fill_indices()

    def _fill_indices(self) -> None:
        if self.task.value is None:
            return
        try:
            n = len(self.pairs(self.split.value, self.task.value))
        except FileNotFoundError as e:  # data not generated yet: say so instead of failing in a callback
            self._show_status(str(e), "#D00000")
            n = 1
        else:
            self.status.value = ""
        self.index.value = min(self.index.value, n - 1)
        self.index.max = n - 1

    def _fill_checkpoints(self) -> None:
        _set_options(self.checkpoint, self.checkpoints(self.experiment.value))
        self.button.disabled = self.experiment.value is None  # nothing to predict with

    def select(
        self,
        split: str | None = None,
        task: str | None = None,
        index: int | None = None,
        experiment: str | None = None,
        checkpoint: str | None = None,
    ) -> TaskBrowser:
        """Set any of the dropdowns/slider as a user would (in dependency order); unknown values raise."""
        for widget, value in (
            (self.split, split),
            (self.task, task),
            (self.experiment, experiment),
            (self.checkpoint, checkpoint),
        ):
            if value is not None:
                if value not in widget.options:
                    raise ValueError(f"{widget.description} {value!r} is not one of {list(widget.options)}")
                widget.value = value
        if index is not None:
            if not 0 <= index <= self.index.max:
                raise ValueError(f"example {index} out of range 0..{self.index.max}")
            self.index.value = index
        return self

    # prediction ------------------------------------------------------------------------------------------

    def predict(self) -> PredictionResult:
        """Generate the query output with the chosen model and draw it (with the episode) in the output area."""
        episode = self.episode()
        ((tokens, logprob),) = generate_tokens(self.model(), [episode])
        grid = tokens_to_grid(tokens)
        status = prediction_status(grid, episode.query_output)
        if grid is None:
            status += f": {invalid_reason(tokens)}"
        self.last_result = PredictionResult(episode, grid, logprob, status, tokens)
        where = f"{self.split.value} {episode.task_id} #{self.index.value}"
        title = f"{where}: {self.experiment.value} / {self.checkpoint.value}"
        self.last_figure = plot_prediction(episode.query_input, episode.query_output, grid, title, tokens)
        colour = "green" if status == "exact match" else "#D00000"
        self._show_status(f"{where}: {status}   (log-probability {logprob:.2f})", colour)
        self.output.clear_output(wait=True)
        with self.output:
            display(self.last_figure)
            display(plot_episode(episode, f"the episode: {where}"))
        return self.last_result

    def _show_status(self, text: str, colour: str) -> None:
        self.status.value = f'<b style="color:{colour}">{escape(text)}</b>'

    def _clear_result(self) -> None:
        """A new selection: the old picture and its status line go (other status messages stay)."""
        if self.last_result is not None and not self.button.disabled:
            self.status.value = ""
        self.output.clear_output()
        self.last_result = self.last_figure = None

    def _on_click(self, _button) -> None:
        # Busy while generating (seconds): the button is disabled, so a second click cannot queue a second run.
        self.button.disabled, self.button.description, self.button.icon = True, "Predicting…", "spinner"
        self._show_status(
            f"predicting {self.task.value} #{self.index.value} with {self.experiment.value}…", "#555555"
        )
        try:
            self.predict()
        except Exception as e:  # a callback's exception would only reach the kernel log: show it here
            self._show_status(f"{type(e).__name__}: {e}", "#D00000")
        finally:
            self.button.description, self.button.icon = "Predict", "play"
            self.button.disabled = self.experiment.value is None
