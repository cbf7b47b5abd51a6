"""Training losses of a whole detector: independent of the batch's padding
(``dataset.train_padding``), and finite on a batch whose crops hold no action."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.model_defaults import model_config

from asl_tal.data.batch import Batch, VideoMeta
from asl_tal.detector import ASLDetector

C, D_IN = 4, 12


def small_detector(**sensitivity) -> ASLDetector:
    cfg = model_config(
        network={
            "input_dim": D_IN,
            "d_emb": 32,
            "n_heads": 4,
            "head_width": 32,
            "l3": 3,
            "max_seq_len": 128,
            "path_drop": 0.0,
        },
        sensitivity=sensitivity,
        ascl={"proj_dim": 16, "num_background": 8},
    )
    cfg["l4"] = cfg["sensitivity"]["evaluator_layers"] = 2
    torch.manual_seed(0)
    return ASLDetector.from_config(cfg, C, class_counts=[5, 3, 2, 4])


def batch_padded_to(length: int, feats: list[torch.Tensor], segments, labels) -> Batch:
    """Two videos (``feats[i]`` is ``(D_IN, T_i)``) zero-padded to ``length`` steps."""
    x = torch.zeros(2, D_IN, length)
    mask = torch.zeros(2, length, dtype=torch.bool)
    for i, f in enumerate(feats):
        x[i, :, : f.shape[1]] = f
        mask[i, : f.shape[1]] = True
    meta = [VideoMeta(f"v{i}", 10.0, 30.0, 1.0, 1.0) for i in range(2)]
    seg_mask = labels >= 0
    return Batch(x, mask, segments, seg_mask, labels, meta)


@pytest.mark.parametrize("sensitivity", [{}, {"class_level": False, "instance_level": False}])
def test_losses_equal_for_longest_and_max_seq_len_padding(sensitivity):
    generator = torch.Generator().manual_seed(1)
    feats = [torch.randn(D_IN, 40, generator=generator), torch.randn(D_IN, 70, generator=generator)]
    segments = torch.tensor([[[3.0, 15.0], [20.0, 36.0]], [[5.0, 30.0], [0.0, 0.0]]])
    labels = torch.tensor([[0, 2], [3, -1]])
    detector = small_detector(**sensitivity)
    losses = {}
    for length in (72, 128):  # the longest video rounded to 8, and max_seq_len
        model = copy.deepcopy(detector)
        torch.manual_seed(2)  # ASCL's background draw
        losses[length] = model.losses(batch_padded_to(length, feats, segments, labels))
    assert losses[72].keys() == losses[128].keys()
    for key in losses[72]:
        assert torch.allclose(losses[72][key], losses[128][key], rtol=1e-4, atol=1e-5), key


def test_batch_without_any_action_trains():
    """Every crop of the batch dropped its actions: no positive, no GT row for Phi or ASCL."""
    detector = small_detector()  # full ASL, ASCL in topk mode (Phi on every GT frame)
    assert detector.objective.ascl is not None and detector.objective.ascl.settings.mode == "topk"
    generator = torch.Generator().manual_seed(3)
    feats = [torch.randn(D_IN, 40, generator=generator), torch.randn(D_IN, 56, generator=generator)]
    no_gt = torch.full((2, 1), -1)
    losses = detector.losses(batch_padded_to(56, feats, torch.zeros(2, 1, 2), no_gt))
    assert float(losses["num_pos"]) == 0.0
    assert float(losses["loc"].detach()) == 0.0 and float(losses["sens"].detach()) == 0.0
    assert torch.isfinite(losses["loss"]) and float(losses["cls"]) > 0.0  # negatives only
    losses["loss"].backward()
