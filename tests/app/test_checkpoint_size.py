"""``best.ckpt`` is for evaluation (EMA weights once, no optimizer state); ``last.ckpt``
stays complete for resuming, and a sweep can leave it out."""

from __future__ import annotations

import pytest
import torch
from asl_tal.conf import compose
from helpers.runs import tiny
from lightning.pytorch.callbacks import ModelCheckpoint

from asl_tal.checkpoints import CheckpointMismatchError, check_resume_checkpoint, read_checkpoint
from asl_tal.cli.build import build_datamodule, build_module, build_trainer

EMA = "ema.module."
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "callbacks")


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_best_checkpoint_holds_the_ema_weights_once_and_no_optimizer(trained_run):
    path = trained_run / "checkpoints" / "best.ckpt"
    ckpt = torch.load(path, weights_only=True)
    assert not set(TRAINING_STATE) & set(ckpt)
    state = ckpt["state_dict"]
    detector = [name for name in state if name.startswith("detector.")]
    assert detector and "detector.objective.loss_normalizer" in state
    for name in detector:
        twin = state[EMA + name[len("detector.") :]]
        # one storage behind both names: the file holds it once
        assert state[name].untyped_storage().data_ptr() == twin.untyped_storage().data_ptr()
    assert ckpt["hyper_parameters"]["class_names"] == [f"action_{i:02d}" for i in range(8)]
    # the payload: every tensor except the detector.* aliases, at 4 bytes per float32 value
    payload = tensor_bytes(t for name, t in state.items() if not name.startswith("detector."))
    assert payload <= path.stat().st_size < payload + 256 * 1024


def test_last_checkpoint_is_complete_for_resuming(trained_run):
    best = trained_run / "checkpoints" / "best.ckpt"
    last = trained_run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert set(TRAINING_STATE) <= set(ckpt)
    state = ckpt["state_dict"]
    name = "detector.network.cls_head.trunk.layers.0.conv.weight"
    assert not torch.equal(state[name], state[EMA + name[len("detector.") :]])
    # weights + EMA copy + AdamW's two moments per trained value: about 4x the EMA weights
    ema_bytes = tensor_bytes(t for key, t in state.items() if key.startswith(EMA))
    assert last.stat().st_size > 3.5 * ema_bytes
    assert best.stat().st_size < 0.35 * last.stat().st_size


def test_resuming_from_best_names_last_ckpt(trained_run, data_dir):
    best = trained_run / "checkpoints" / "best.ckpt"
    cfg = compose("train", tiny(data_dir, trained_run))
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    with pytest.raises(CheckpointMismatchError, match="no optimizer state") as info:
        check_resume_checkpoint(best, read_checkpoint(best), module, datamodule)
    assert str(info.value).startswith(f"{best}: ") and "last.ckpt" in str(info.value)


def test_last_checkpoint_can_be_turned_off(data_dir, tmp_path):
    overrides = ("callbacks.last_checkpoint=null", "logger=none", f"paths.output_dir={tmp_path}")
    cfg = compose("train", tiny(data_dir, tmp_path, *overrides))
    checkpoints = [c for c in build_trainer(cfg).callbacks if isinstance(c, ModelCheckpoint)]
    assert [(c.filename, c.save_weights_only) for c in checkpoints] == [("best", True)]
