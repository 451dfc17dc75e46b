"""One LightningModule serving all five models, with the Trial 69 recipe.

Validation, for each of the "val" and "heldout" sets, pooled and per task: teacher-forced loss and token
accuracy, and the loss apart on target cells whose colour is absent from the source ("novel") and on all
other tokens ("known", which every arm can name: compare arms there); then, on a fixed subset, free
generation scored by `arclib.evaluation.metrics`.
"""

from __future__ import annotations

from collections import defaultdict

import lightning as L
import torch

from arclib.data.tokens import PAD, Batch
from arclib.evaluation.metrics import aggregate, grid_metrics
from arclib.evaluation.predict import predict_grids
from arclib.models import build_model, count_parameters
from arclib.models.base import novel_colour_targets, token_nll
from arclib.training.checkpoints import DivergenceError
from arclib.training.datamodule import VAL_SETS


class NonFiniteLossError(DivergenceError):
    """Training produced a NaN/inf loss; raised before the optimiser step so no NaN weights are saved."""


class ArcLitModule(L.LightningModule):
    def __init__(
        self,
        model_name: str = "exp_3_champion",
        preset: str = "matched",
        model_overrides: dict | None = None,
        lr: float = 0.0018498849832733245,
        betas: tuple[float, float] = (0.95, 0.999),
        weight_decay: float = 0.0,
        scheduler_t0: int = 6,
        scheduler_t_mult: int = 1,
        eta_min: float = 1.6816632143867157e-06,
        warmup_steps: int = 0,
        generate_per_task: int = 8,
        generate_every_n_epochs: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(model_name, preset, **(model_overrides or {}))
        self._val_sums: dict = {}

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.model)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(batch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.model.loss(self.model(batch), batch.tgt_out)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss {loss.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); stopping before the weights are updated"
            )
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # Before clipping: clipping an infinite norm would turn every gradient into NaN.
        norms = [p.grad.norm() for p in self.parameters() if p.grad is not None]
        if norms and not torch.isfinite(norm := torch.stack(norms).norm()):
            raise DivergenceError(
                f"training diverged: non-finite gradient norm {norm.item()} at global step {self.global_step} "
                f"(epoch {self.current_epoch}); stopping before the weights are updated"
            )

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(
            self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=hp.scheduler_t0, T_mult=hp.scheduler_t_mult, eta_min=hp.eta_min
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # Linear warm-up over the first `warmup_steps` steps, scaling whatever the cosine gives, so the
        # recipe's per-epoch schedule is untouched once it ends (and entirely when warmup_steps is 0).
        if self.global_step < self.hparams.warmup_steps:
            scale = (self.global_step + 1) / self.hparams.warmup_steps
            for group, scheduled in zip(optimizer.param_groups, self.lr_schedulers().get_last_lr()):
                group["lr"] = scale * scheduled
        optimizer.step(closure=optimizer_closure)

    # validation -----------------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._val_sums = {name: defaultdict(lambda: torch.zeros(5, dtype=torch.float64)) for name in VAL_SETS}

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self.model(batch)  # (B, T, V)
        target = batch.tgt_out
        real = target != PAD
        nll = token_nll(logits, target)
        correct = (logits.argmax(-1) == target) & real
        novel = novel_colour_targets(batch)
        sums = self._val_sums[VAL_SETS[dataloader_idx]]
        # per-task sums of (nll, correct tokens, real tokens, nll on novel-colour cells, novel-colour cells)
        for i, task_id in enumerate(batch.task_ids):
            parts = [nll[i].sum(), correct[i].sum(), real[i].sum(), nll[i][novel[i]].sum(), novel[i].sum()]
            row = torch.stack(parts).double().cpu()
            sums[task_id] += row
            sums["all"] += row

    def on_validation_epoch_end(self) -> None:
        for name, sums in self._val_sums.items():
            for key, (nll, correct, count, novel_nll, n_novel) in sums.items():
                if count == 0:
                    continue
                prefix = f"{name}" if key == "all" else f"{name}/{key}"
                # Every rank validates on all episodes (ArcDataModule), so no cross-rank sync is needed.
                self.log(f"{prefix}_loss", nll / count, prog_bar=key == "all" and name == "val")
                self.log(f"{prefix}_token_acc", correct / count)
                self.log(f"{prefix}_known_loss", (nll - novel_nll) / (count - n_novel))
                if n_novel > 0:
                    self.log(f"{prefix}_novel_loss", novel_nll / n_novel)
                if not torch.isfinite(nll):
                    raise DivergenceError(
                        f"training diverged: non-finite {prefix}_loss at global step {self.global_step} "
                        f"(epoch {self.current_epoch}); no checkpoint is written from these weights"
                    )
        if self.trainer.sanity_checking or self.hparams.generate_per_task <= 0:
            return
        last_epoch = self.current_epoch + 1 == self.trainer.max_epochs
        if (self.current_epoch + 1) % self.hparams.generate_every_n_epochs == 0 or last_epoch:
            self._log_generation_metrics()

    def _log_generation_metrics(self) -> None:
        datamodule = self.trainer.datamodule
        for name in VAL_SETS:
            episodes = datamodule.generation_episodes(name, self.hparams.generate_per_task)
            if not episodes:
                continue
            preds = predict_grids(self.model, episodes)
            rows = [
                (ep.task_id, grid_metrics(p, ep.query_output, ep.query_input))
                for ep, (p, _) in zip(episodes, preds)
            ]
            for key, metrics in aggregate(rows).items():
                prefix = name if key == "all" else f"{name}/{key}"
                for metric, value in metrics.items():
                    self.log(
                        f"{prefix}_gen_{metric}",
                        value,
                        prog_bar=(key == "all" and metric == "exact" and name == "val"),
                    )
