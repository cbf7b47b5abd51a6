"""The vectorised AP core against a straight-loop transcription of the official protocol."""

from __future__ import annotations

import numpy as np
import pytest

from asl_tal.metrics.matching import GroundTruth, detection_ap, mean_ap, segment_tiou


def reference_tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def reference_interpolated_ap(precision: list[float], recall: list[float]) -> float:
    mprec = [0.0, *precision, 0.0]
    mrec = [0.0, *recall, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum(
        (mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]
    )


def reference_ap(gt, preds, num_classes, thresholds):
    """gt: [(video, start, end, label)], preds: [(video, start, end, score, label)] -> (T, C)."""
    out = np.full((len(thresholds), num_classes), np.nan)
    for c in range(num_classes):
        gts = [g for g in gt if g[3] == c]
        if not gts:
            continue
        mine = [p for p in preds if p[4] == c]
        ascending = sorted(range(len(mine)), key=lambda i: mine[i][3])  # stable
        ranked = [mine[i] for i in reversed(ascending)]
        for t, thr in enumerate(thresholds):
            locked = [False] * len(gts)
            flags = []
            for p in ranked:
                cands = [
                    (reference_tiou(p[1:3], g[1:3]), j) for j, g in enumerate(gts) if g[0] == p[0]
                ]
                cands.sort(reverse=True)  # tIoU descending, later GT first on ties
                hit = False
                for tiou, j in cands:
                    if tiou < thr:
                        break
                    if locked[j]:
                        continue
                    locked[j] = hit = True
                    break
                flags.append(hit)
            tp = np.cumsum(flags, dtype=float)
            fp = np.cumsum([not f for f in flags], dtype=float)
            recall = list(tp / len(gts))
            precision = list(tp / np.maximum(tp + fp, 1e-300))
            out[t, c] = reference_interpolated_ap(precision, recall)
    return out


def random_case(rng: np.random.Generator, num_videos: int, num_classes: int, num_preds: int):
    gt = []
    for v in range(num_videos):
        for _ in range(rng.integers(0, 6)):
            start = rng.uniform(0, 90)
            gt.append((v, start, start + rng.uniform(0.5, 15), int(rng.integers(num_classes))))
    preds = []
    for _ in range(num_preds):
        v = int(rng.integers(num_videos + 1))  # video num_videos has no GT at all
        own = [g for g in gt if g[0] == v]
        if own and rng.random() < 0.6:
            g = own[rng.integers(len(own))]
            start, end = g[1] + rng.normal(0, 2), g[2] + rng.normal(0, 2)
            label = g[3] if rng.random() < 0.8 else int(rng.integers(num_classes))
        else:
            start = rng.uniform(0, 90)
            end, label = start + rng.uniform(0.5, 15), int(rng.integers(num_classes))
        preds.append((v, min(start, end), max(start, end) + 1e-3, float(rng.random()), label))
    return gt, preds


def as_arrays(gt, preds):
    gt_arr = GroundTruth(
        video_idx=np.array([g[0] for g in gt], dtype=np.int64),
        segments=np.array([g[1:3] for g in gt], dtype=np.float64).reshape(-1, 2),
        labels=np.array([g[3] for g in gt], dtype=np.int64),
    )
    return gt_arr, (
        np.array([p[0] for p in preds], dtype=np.int64),
        np.array([p[1:3] for p in preds], dtype=np.float64).reshape(-1, 2),
        np.array([p[3] for p in preds], dtype=np.float64),
        np.array([p[4] for p in preds], dtype=np.int64),
    )


@pytest.mark.parametrize("seed", range(8))
def test_matches_reference_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 4
    gt, preds = random_case(rng, num_videos=6, num_classes=num_classes, num_preds=150)
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    expected = reference_ap(gt, preds, num_classes, thresholds)
    gt_arr, pred_arr = as_arrays(gt, preds)
    got = detection_ap(gt_arr, *pred_arr, num_classes, np.array(thresholds))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_with_tied_scores_and_segments(seed: int) -> None:
    # Scores on a coarse grid and repeated segments exercise both tie rules.
    rng = np.random.default_rng(100 + seed)
    gt, preds = random_case(rng, num_videos=4, num_classes=3, num_preds=120)
    preds = [(v, round(s), round(e), round(sc, 1), c) for v, s, e, sc, c in preds]
    preds = [(v, s, e if e > s else s + 1, sc, c) for v, s, e, sc, c in preds]
    gt = [(v, round(s), round(s) + max(1, round(e - s)), c) for v, s, e, c in gt]
    thresholds = [0.2, 0.5]
    expected = reference_ap(gt, preds, 3, thresholds)
    gt_arr, pred_arr = as_arrays(gt, preds)
    got = detection_ap(gt_arr, *pred_arr, 3, np.array(thresholds))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True)


def test_segment_tiou_by_hand() -> None:
    # [0,10] vs [5,15]: inter 5, union 15 -> 1/3; disjoint -> 0; contained [2,4] in [0,10] -> 0.2
    pred = np.array([[0.0, 10.0], [0.0, 1.0], [2.0, 4.0]])
    gt = np.array([[5.0, 15.0], [2.0, 3.0], [0.0, 10.0]])
    np.testing.assert_allclose(segment_tiou(pred, gt), [1 / 3, 0.0, 0.2])


def test_mean_ap_without_any_gt_is_an_error() -> None:
    with pytest.raises(ValueError, match="no class has ground truth"):
        mean_ap(np.full((2, 3), np.nan))
