"""Focal, DIoU and L_s against their closed forms on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch

from asl_tal.objective.diou import DIoULoss, offset_iou
from asl_tal.objective.focal import SigmoidFocalLoss
from asl_tal.objective.sensitivity_loss import SensitivityRegressionLoss


def logit(p):
    return math.log(p / (1 - p))


def test_focal_positive_and_negative():
    loss = SigmoidFocalLoss(alpha=0.25, gamma=2.0)
    got = loss(torch.tensor([logit(0.9), logit(0.3)]), torch.tensor([1.0, 0.0]))
    assert got[0].item() == pytest.approx(-0.25 * (1 - 0.9) ** 2 * math.log(0.9), rel=1e-5)
    assert got[1].item() == pytest.approx(-0.75 * 0.3**2 * math.log(0.7), rel=1e-5)


def test_focal_sum_and_label_smoothing():
    eps, num_classes = 0.1, 4
    loss = SigmoidFocalLoss(alpha=0.25, gamma=2.0, label_smoothing=eps, reduction="sum")
    p = [0.8, 0.1, 0.2, 0.05]
    y = [1.0, 0.0, 0.0, 0.0]
    want = 0.0
    for pi, yi in zip(p, y, strict=True):
        ys = yi * (1 - eps) + eps / (num_classes + 1)
        bce = -(ys * math.log(pi) + (1 - ys) * math.log(1 - pi))
        p_t = pi * ys + (1 - pi) * (1 - ys)
        want += (0.25 * ys + 0.75 * (1 - ys)) * (1 - p_t) ** 2 * bce
    got = loss(torch.tensor([logit(v) for v in p]), torch.tensor(y))
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_diou_hand_case():
    # point t = 10; pred [10-2, 10+4] = [8, 14]; target [10-3, 10+1] = [7, 11]
    pred, target = torch.tensor([[2.0, 4.0]]), torch.tensor([[3.0, 1.0]])
    iou = 3.0 / 7.0  # intersection [8, 11], union [7, 14]
    rho = 11.0 - 9.0  # centres 11 and 9
    enclosing = 14.0 - 7.0
    assert offset_iou(pred, target).item() == pytest.approx(iou)
    assert DIoULoss()(pred, target).item() == pytest.approx(1 - iou + rho**2 / enclosing**2)
    # identical segments: loss 0
    assert DIoULoss()(target, target).item() == pytest.approx(0.0, abs=1e-7)


def test_sensitivity_regression_loss():
    q_cls = torch.tensor([0.2, 0.9], requires_grad=True)
    q_loc = torch.tensor([0.5, 0.4])
    target_cls = torch.tensor([0.6, 0.7], requires_grad=True)
    target_loc = torch.tensor([0.1, 0.4])
    got = SensitivityRegressionLoss()(q_cls, q_loc, target_cls, target_loc, 4.0)
    want = ((0.2 - 0.6) ** 2 + (0.9 - 0.7) ** 2 + (0.5 - 0.1) ** 2 + 0.0) / 4.0
    assert got.item() == pytest.approx(want, rel=1e-6)
    got.backward()
    assert q_cls.grad is not None and target_cls.grad is None
