"""Every training profile resolves (base + experiment + profile) to the monitor, epochs and augmentation it
declares; a new profile must be added here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from arclib.training.cli import CONFIG_DIR, PROFILES, make_cli

# profile -> (monitor, max_epochs, (dihedral, colours, context order) augmentation of the training episodes)
EXPECTED = {
    "smoke": ("val_loss", 2, (True, True, True)),
    "cpu": ("heldout_loss", 6, (False, False, True)),  # context order shuffled, grids untouched
    "full": ("heldout_loss", 100, (True, True, True)),
    "gpu": ("heldout_loss", 100, (True, True, True)),
}
ON_DISK = sorted(p.stem for p in (CONFIG_DIR / "profiles").glob("*.yaml"))


def test_every_profile_is_checked():
    assert set(ON_DISK) <= set(EXPECTED) and set(PROFILES) <= set(ON_DISK)


@pytest.mark.parametrize("profile", ON_DISK)
def test_profile_resolves_to_what_it_declares(profile, tmp_path):
    monitor, max_epochs, augment = EXPECTED[profile]
    configs = [CONFIG_DIR / "exp_3_champion.yaml", CONFIG_DIR / "profiles" / f"{profile}.yaml"]
    args = [a for path in configs for a in ("--config", str(path))]
    exp = make_cli([*args, "--output_root", str(tmp_path)], run=False)
    trainer = exp.trainer
    assert trainer.max_epochs == max_epochs
    stop = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
    best = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.save_top_k == 3)
    assert stop.monitor == best.monitor == monitor and stop.mode == best.mode == "min"
    assert monitor in best.filename
    a = exp.datamodule.augment
    assert (a.dihedral, a.colours, a.context_order) == augment


@pytest.mark.parametrize("profile", ["cpu", "full", "gpu"])
def test_training_profiles_state_their_choices(profile):
    # Monitor, epochs and augmentation are written in the profile itself, beside the reasons for them, not
    # inherited silently from base.yaml or the datamodule's defaults.
    declared = yaml.safe_load(Path(CONFIG_DIR / "profiles" / f"{profile}.yaml").read_text())
    assert declared["monitor"] == EXPECTED[profile][0]
    assert declared["trainer"]["max_epochs"] == EXPECTED[profile][1]
    assert {"augment_dihedral", "augment_colours"} <= set(declared["data"])


def test_gpu_profile_keeps_the_recipe_batch_and_feeds_the_device(tmp_path):
    configs = [CONFIG_DIR / "exp_3_champion.yaml", CONFIG_DIR / "profiles" / "gpu.yaml"]
    exp = make_cli(
        [a for p in configs for a in ("--config", str(p))] + ["--output_root", str(tmp_path)], run=False
    )
    h = exp.datamodule.hparams
    assert (h.batch_size, h.num_workers, h.pin_memory) == (32, 4, True)
