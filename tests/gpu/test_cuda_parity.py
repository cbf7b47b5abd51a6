"""CPU and GPU give the same detections and the same network outputs (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from helpers.model_defaults import network_kwargs, postprocess_config

from asl_tal.data.batch import VideoMeta
from asl_tal.models.network import ASLNetwork
from asl_tal.models.points import PointGenerator, doubling_ranges
from asl_tal.postprocess.decode import postprocess

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("method", ["soft_gaussian", "soft_linear", "hard"])
def test_postprocess_same_on_cpu_and_gpu(method):
    generator = torch.Generator().manual_seed(0)
    points = PointGenerator(4, doubling_ranges(4))(64)
    batch, num_points, num_classes = 3, points.shape[0], 5
    logits = torch.randn(batch, num_points, num_classes, generator=generator) * 2
    offsets = torch.rand(batch, num_points, 2, generator=generator) * 6
    mask = torch.ones(batch, num_points, dtype=torch.bool)
    meta = [VideoMeta(f"v{i}", 70.0, 1.0, 1.0, 1.0, 0.0, 64) for i in range(batch)]
    cfg = postprocess_config(nms_method=method, max_seg_num=50)
    cpu = postprocess(points, logits, offsets, mask, meta, cfg)
    gpu = postprocess(points.cuda(), logits.cuda(), offsets.cuda(), mask.cuda(), meta, cfg)
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.labels.cpu(), a.labels)
        torch.testing.assert_close(b.scores.cpu(), a.scores, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.segments.cpu(), a.segments, rtol=1e-5, atol=1e-5)


def test_network_same_on_cpu_and_gpu():
    torch.manual_seed(0)
    net = ASLNetwork(
        **network_kwargs(input_dim=16, num_classes=4, d_emb=32, n_heads=4, l3=3, head_width=32)
    )
    net.eval()
    feats = torch.randn(2, 16, 64)
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 40:] = False
    with torch.no_grad():
        cpu = net(feats, mask)
        gpu = net.cuda()(feats.cuda(), mask.cuda())
    for a, b in zip(cpu.cls_logits + cpu.offsets, gpu.cls_logits + gpu.offsets, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4)
