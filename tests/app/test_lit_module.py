"""The LightningModule's own logic: LR schedule, EMA, non-finite losses."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from asl_tal.conf import compose
from helpers.modules import tiny_module
from omegaconf import OmegaConf
from torch import nn

from asl_tal.data.batch import Batch, VideoMeta
from asl_tal.ema import ModelEMA
from asl_tal.lit_module import NonFiniteLossError
from asl_tal.optim import build_optimizer, cosine_multiplier, warmup_cosine, warmup_step


def test_warmup_then_cosine_by_hand():
    # 4 warm-up steps of 10: (n + 1) / 4, then 0.5 (1 + cos(pi * progress))
    assert cosine_multiplier(0, 4, 10, 0.0) == pytest.approx(0.25)
    assert cosine_multiplier(3, 4, 10, 0.0) == pytest.approx(1.0)
    assert cosine_multiplier(4, 4, 10, 0.0) == pytest.approx(1.0)
    assert cosine_multiplier(7, 4, 10, 0.0) == pytest.approx(0.5)  # progress 3/6
    assert cosine_multiplier(10, 4, 10, 0.0) == pytest.approx(0.0)
    assert cosine_multiplier(10, 4, 10, 0.1) == pytest.approx(0.1)


def lr_curve(scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_schedules_from_their_config_keys():
    param = nn.Parameter(torch.zeros(1))
    # 2 steps per epoch, 1 warm-up epoch, 2 epochs: warm-up 0.5, 1; cosine over steps 2..6
    cosine = warmup_cosine(torch.optim.SGD([param], lr=1.0), 2, 1, 2, eta_min=0.0)
    expected = [
        0.5,
        1.0,
        1.0,
        0.5 * (1 + math.cos(math.pi / 4)),
        0.5,
        0.5 * (1 - math.cos(math.pi / 4)),
        0.0,
    ]
    assert lr_curve(cosine, 7) == pytest.approx(expected)
    # milestones at 0.5 and 1.0 of 2 epochs after warm-up: steps 2 + 2 = 4 and 2 + 4 = 6
    step = warmup_step(torch.optim.SGD([param], lr=1.0), 2, 1, 2, [0.5, 1.0], gamma=0.1)
    assert lr_curve(step, 7) == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01])


@pytest.mark.parametrize("option", ["adamw", "sgd"])
def test_optimizer_group_options_build_over_the_parameter_groups(option):
    cfg = OmegaConf.to_container(compose("train", [f"optimizer={option}"]).optimizer)
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model, cfg)
    assert type(optimizer).__name__ == {"adamw": "AdamW", "sgd": "SGD"}[option]
    decayed, plain = optimizer.param_groups
    assert decayed["params"] == [model.weight] and plain["params"] == [model.bias]
    assert decayed["weight_decay"] == cfg["weight_decay"] and plain["weight_decay"] == 0.0


def test_gaussian_lr_scale_from_the_config_reaches_the_optimizer():
    module = tiny_module(["model.sensitivity.gaussian_lr_scale=20"])
    optimizer = build_optimizer(module.detector, module.hparams.optimizer)
    scaled = [g for g in optimizer.param_groups if "lr_scale" in g]
    assert len(scaled) == 1 and scaled[0]["lr"] == pytest.approx(
        20 * module.hparams.optimizer["lr"]
    )
    sens = module.detector.objective.class_sensitivity
    assert {id(p) for p in scaled[0]["params"]} == {id(p) for p in sens.parameters()}


def test_loc_sigma_init_from_the_config_reaches_the_gaussians():
    sens = tiny_module(["model.sensitivity.loc_sigma_init=0.25"]).detector.objective
    sens = sens.class_sensitivity
    assert sens.sigma_L.tolist() == [0.25] * len(sens.sigma_L)
    assert sens.sigma_R.tolist() == [0.25] * len(sens.sigma_R)
    assert sens.sigma_cls.tolist() == [1.0] * len(sens.sigma_cls)


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
    return tiny_module([])


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


def video_batch() -> Batch:
    """One 64-step video of random features with one GT, steps 4..20."""
    meta = [VideoMeta("video", 64.0, 1.0, 1.0, 1.0, 0.0, 64)]
    return Batch(
        torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(0)),
        torch.ones(1, 64, dtype=torch.bool),
        torch.tensor([[[4.0, 20.0]]]),
        torch.ones(1, 1, dtype=torch.bool),
        torch.zeros(1, 1, dtype=torch.long),
        meta,
    )


@pytest.mark.parametrize("dead_end", [True, False])
def test_a_dead_distance_channel_is_a_warning_at_the_epoch_end(
    module, monkeypatch, caplog, dead_end
):
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    # pre-activations 1 everywhere (distances 1), the end channel's -5 when dead (ReLU: 0)
    out = module.detector.network.loc_head.trunk.out
    with torch.no_grad():
        out.weight.zero_()
        out.bias.copy_(torch.tensor([1.0, -5.0 if dead_end else 1.0]))
    module.on_train_epoch_start()
    for step in range(2):
        module.training_step(video_batch(), step)
    with caplog.at_level("WARNING", logger="asl_tal.lit_module"):
        module.on_train_epoch_end()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if dead_end:
        assert warnings == [
            "epoch 0: the regressed end distance was 0 at every positive point, so end "
            "boundaries no longer train (a dead ReLU channel); train with "
            "model.network.offset_activation=softplus"
        ]
    else:
        assert warnings == []
