"""Recall@k× on a case worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.metrics.recall import RecallAtK

# v0, class 0: g0 [0,10], g1 [20,30]; class 1: h0 [0,10].
GT = {
    "v0": VideoAnnotation(
        "v0", "val", 100.0, 30.0, np.array([[0, 10], [20, 30], [0, 10]], float), np.array([0, 0, 1])
    )
}
# class 0 (n_gt 2): [40,50] s.9 (tIoU 0), [0,10] s.8 (g0: 1), [20,25] s.7 (g1: 0.5)
# class 1 (n_gt 1): [0,5] s.5 (h0: 0.5), [0,10] s.4 (h0: 1, but ranked second)
ROWS = [(40, 50, 0.9, 0), (0, 10, 0.8, 0), (20, 25, 0.7, 0), (0, 5, 0.5, 1), (0, 10, 0.4, 1)]


def run(**kwargs) -> dict[str, np.ndarray]:
    metric = RecallAtK(GT, {"v0": 0}, num_classes=2, tiou_thresholds=[0.3, 0.5], **kwargs)
    metric.update(
        torch.zeros(len(ROWS), dtype=torch.int64),
        torch.tensor([r[:2] for r in ROWS], dtype=torch.float64),
        torch.tensor([r[2] for r in ROWS]),
        torch.tensor([r[3] for r in ROWS]),
    )
    return {k: v.numpy() for k, v in metric.compute().items()}


def test_instance_average() -> None:
    # k=1: class 0 keeps its top 2 ([40,50], [0,10]) -> g0 yes, g1 no; class 1 keeps [0,5]
    #      -> h0 at 0.5 (>= both thresholds). Recall 2/3, 2/3.
    # k=5: every prediction kept -> g0 1, g1 0.5, h0 1 -> 3/3 at both thresholds.
    out = run()
    np.testing.assert_allclose(out["recall@1x"], [2 / 3, 2 / 3])
    np.testing.assert_allclose(out["recall@5x"], [1.0, 1.0])


def test_strict_greater() -> None:
    # At 0.5 the 0.5 overlaps no longer count: k=1 -> only g0 (1/3); k=5 -> g0 and h0
    # (h0 reaches tIoU 1 through the second prediction) -> 2/3.
    out = run(strict_greater=True)
    np.testing.assert_allclose(out["recall@1x"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(out["recall@5x"], [1.0, 2 / 3])


def test_class_average() -> None:
    # k=1: class 0 recalls 1 of 2, class 1 recalls 1 of 1 -> (1/2 + 1) / 2 = 3/4 at both.
    out = run(average="class")
    np.testing.assert_allclose(out["recall@1x"], [0.75, 0.75])
    np.testing.assert_allclose(out["recall@5x"], [1.0, 1.0])


def test_bad_average_is_rejected() -> None:
    with pytest.raises(ValueError, match="average"):
        run(average="video")


def reference_recall(gt, preds, k, thr, strict):
    """Straight loops; gt (video, start, end, label), preds (video, start, end, score, label)."""

    def tiou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)

    hits = 0
    for g in gt:
        n_gt = sum(1 for h in gt if h[0] == g[0] and h[3] == g[3])
        mine = [p for p in preds if p[0] == g[0] and p[4] == g[3]]
        top = sorted(mine, key=lambda p: -p[3])[: k * n_gt]
        overlaps = [tiou(p[1:3], g[1:3]) for p in top]
        hits += any(o > thr if strict else o >= thr for o in overlaps)
    return hits / len(gt)


@pytest.mark.parametrize("strict", [False, True])
def test_matches_reference_on_random_inputs(strict: bool) -> None:
    rng = np.random.default_rng(7)
    gt = [
        (int(rng.integers(3)), s, s + rng.uniform(1, 10), int(rng.integers(2)))
        for s in rng.uniform(0, 50, 12)
    ]
    preds = [
        (int(rng.integers(3)), s, s + rng.uniform(1, 10), float(rng.random()), int(rng.integers(2)))
        for s in rng.uniform(0, 50, 200)
    ]
    anns = {
        f"v{v}": VideoAnnotation(
            f"v{v}",
            "val",
            100.0,
            30.0,
            np.array([g[1:3] for g in gt if g[0] == v], float).reshape(-1, 2),
            np.array([g[3] for g in gt if g[0] == v], dtype=np.int64),
        )
        for v in range(3)
    }
    metric = RecallAtK(
        anns, {f"v{v}": v for v in range(3)}, 2, [0.1, 0.3, 0.5], strict_greater=strict
    )
    metric.update(
        torch.tensor([p[0] for p in preds]),
        torch.tensor([p[1:3] for p in preds], dtype=torch.float64),
        torch.tensor([p[3] for p in preds], dtype=torch.float64),
        torch.tensor([p[4] for p in preds]),
    )
    out = metric.compute()
    for k in (1, 5):
        expected = [reference_recall(gt, preds, k, t, strict) for t in (0.1, 0.3, 0.5)]
        np.testing.assert_allclose(out[f"recall@{k}x"].numpy(), expected, atol=1e-12)
        assert 0 < expected[0] < 1
