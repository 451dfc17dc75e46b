"""Safe checkpoints: atomic writes survive a crash mid-write; loading refuses pickled code and names the problem."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from arclib.training.checkpoints import AtomicCheckpointIO, CheckpointError, load_checkpoint, load_model
from arclib.training.module import ArcLitModule


class Exploit:
    """Unpickling this would run a shell command: the classic malicious-pickle payload."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/arclib_pwned",))


def good_checkpoint() -> dict:
    module = ArcLitModule("exp_0_encoder_decoder", "tiny")
    return {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "global_step": 3,
        "epoch": 0,
    }


def test_round_trip_and_load_model(tmp_path):
    path = tmp_path / "a.ckpt"
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(), path)
    assert load_checkpoint(path)["global_step"] == 3
    module = load_model(path)
    assert module.hparams.model_name == "exp_0_encoder_decoder" and not module.training


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    checkpoint = good_checkpoint()
    checkpoint["payload"] = Exploit()
    torch.save(checkpoint, path)
    if os.path.exists("/tmp/arclib_pwned"):
        os.remove("/tmp/arclib_pwned")
    with pytest.raises(CheckpointError, match="refused to load") as e:
        load_checkpoint(path)
    assert "evil.ckpt" in str(e.value)
    assert not os.path.exists("/tmp/arclib_pwned")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not_a_checkpoint", "missing"])
def test_damaged_checkpoints_get_clear_errors(tmp_path, damage):
    path = tmp_path / "bad.ckpt"
    AtomicCheckpointIO().save_checkpoint(good_checkpoint(), path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not_a_checkpoint":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match="bad.ckpt") as e:
        load_model(path)
    expected = {"missing": "not found", "not_a_checkpoint": "not a Lightning checkpoint"}.get(
        damage, "corrupt or truncated"
    )
    assert expected in str(e.value)


def test_wrong_architecture_is_named(tmp_path):
    checkpoint = good_checkpoint()
    checkpoint["hyper_parameters"]["model_name"] = "exp_3_champion"
    path = tmp_path / "mixed.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="do not fit exp_3_champion"):
        load_model(path)


WRITER = """
import sys, torch
from arclib.training.checkpoints import AtomicCheckpointIO
io_ = AtomicCheckpointIO()
step = 0
while True:
    step += 1
    io_.save_checkpoint({"state_dict": {"w": torch.full((4_000_000,), float(step))}, "global_step": step}, sys.argv[1])
    print(step, flush=True)
"""


def test_sigkill_during_checkpoint_writes_never_leaves_a_truncated_file(tmp_path):
    path = tmp_path / "last.ckpt"
    for delay in (0.05, 0.13, 0.29):  # kill at different points of the write loop
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "1" or path.exists()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        checkpoint = load_checkpoint(path)  # complete, whichever write the kill interrupted
        step = checkpoint["global_step"]
        assert bool((checkpoint["state_dict"]["w"] == step).all())


def test_interrupted_replace_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io_ = AtomicCheckpointIO()
    io_.save_checkpoint(good_checkpoint(), path)
    before = path.read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io_.save_checkpoint(good_checkpoint(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the temporary file is cleaned up
