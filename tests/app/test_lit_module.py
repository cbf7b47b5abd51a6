"""The LightningModule's own logic: LR schedule, EMA, non-finite losses."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

import asl_tal.app  # noqa: F401  (registers the ${sum:...} resolver)
from asl_tal.data.batch import Batch, VideoMeta
from asl_tal.ema import ModelEMA
from asl_tal.lit_module import ASLLitModule, NonFiniteLossError, warmup_cosine
from asl_tal.optim import build_optimizer

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_warmup_then_cosine_by_hand():
    # 4 warm-up steps of 10: (n + 1) / 4, then 0.5 (1 + cos(pi * progress))
    assert warmup_cosine(0, 4, 10, 0.0) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 10, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(4, 4, 10, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(7, 4, 10, 0.0) == pytest.approx(0.5)  # progress 3/6
    assert warmup_cosine(10, 4, 10, 0.0) == pytest.approx(0.0)
    assert warmup_cosine(10, 4, 10, 0.1) == pytest.approx(0.1)


def test_ema_decay_warms_up_and_averages():
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 0.0)
    ema = ModelEMA(model, decay=0.999, warmup=True)
    expected = 0.0
    for n in range(3):
        model.weight.data.fill_(float(n + 1))
        decay = min(0.999, (1 + n) / (10 + n))  # 0.1, 2/11, 0.25
        expected = decay * expected + (1 - decay) * (n + 1)
        ema.update(model)
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert ema.num_updates.item() == 3
    fixed = ModelEMA(model, decay=0.9, warmup=False)
    model.weight.data.fill_(10.0)
    fixed.update(model)
    assert fixed.module.weight.item() == pytest.approx(0.9 * 3.0 + 0.1 * 10.0)


@pytest.fixture
def module():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["debug=tiny"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=False)
    model_cfg.update(input_dim=8, num_classes=3, max_seq_len=64)
    return ASLLitModule(
        model=model_cfg,
        optimizer=OmegaConf.to_container(cfg.optimizer),
        scheduler=OmegaConf.to_container(cfg.scheduler),
        postprocess=OmegaConf.to_container(cfg.postprocess),
        evaluation=OmegaConf.to_container(cfg.evaluation),
        class_names=["a", "b", "c"],
    )


def nan_batch() -> Batch:
    feats = torch.full((1, 8, 64), float("nan"))
    meta = [VideoMeta("broken_video", 64.0, 1.0, 1.0, 1.0, 0.0, 64)]
    return Batch(
        feats,
        torch.ones(1, 64, dtype=torch.bool),
        torch.tensor([[[4.0, 20.0]]]),
        torch.ones(1, 1, dtype=torch.bool),
        torch.zeros(1, 1, dtype=torch.long),
        meta,
    )


def test_non_finite_loss_names_the_videos(module):
    with pytest.raises(NonFiniteLossError, match="broken_video"):
        module.training_step(nan_batch(), 0)


def test_non_finite_loss_can_be_skipped_and_counted(module, monkeypatch):
    module.skip_nonfinite = True
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    assert module.training_step(nan_batch(), 0) is None
    assert module.skipped_steps.item() == 1


def test_clipping_without_a_gradient_scaler_uses_the_fused_optimizer(module):
    # bf16 / fp32: no scaler, so the module clips itself (Lightning would refuse fused AdamW)
    module._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=None))
    optimizer = build_optimizer(module.detector, {**module.hparams.optimizer, "fused": True})
    params = [p for p in module.detector.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    module.configure_gradient_clipping(optimizer, 0.5, "norm")
    total = torch.sqrt(sum((p.grad**2).sum() for p in params))
    assert total.item() == pytest.approx(0.5, rel=1e-4)
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    module.configure_gradient_clipping(optimizer, 0.25, "value")
    assert all(torch.all(p.grad == 0.25) for p in params)
