"""Detection mAP metric on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.metrics import detection_map as dm
from asl_tal.metrics.detection_map import TemporalActionDetectionMAP
from asl_tal.metrics.matching import interpolated_ap


def ann(video_id: str, segments: list[list[float]], labels: list[int]) -> VideoAnnotation:
    return VideoAnnotation(
        video_id=video_id,
        subset="test",
        duration=100.0,
        fps=30.0,
        segments=np.array(segments, dtype=np.float64).reshape(-1, 2),
        labels=np.array(labels, dtype=np.int64),
    )


# Classes: 0 and 1 with predictions, 2 predicted but without GT (ignored), 3 GT only (AP 0).
GT = {
    "v0": ann("v0", [[0, 10], [20, 30], [0, 10]], [0, 0, 1]),
    "v1": ann("v1", [[0, 10], [50, 60]], [0, 3]),
}
INDEX = {"v0": 0, "v1": 1, "v2": 2}  # v2 is outside the GT subset

# (video, start, end, score, label), in listing order.
PREDS = [
    (0, 0, 10, 0.9, 0),  # TP: GT [0,10], tIoU 1
    (0, 0, 10, 0.8, 0),  # duplicate of a matched GT -> FP ([20,30] has tIoU 0)
    (1, 0, 5, 0.7, 0),  # tIoU 0.5: TP at 0.5, FP at 0.7
    (2, 0, 10, 0.6, 0),  # video without GT -> FP
    (0, 20, 28, 0.5, 0),  # tIoU 0.8 with [20,30]: TP at both
    (0, 0, 10, 0.6, 1),  # tie with the next row; listed first, so ranked second
    (0, 0, 4, 0.6, 1),  # ranked first: tIoU 0.4 -> FP, then the row above is TP
    (0, 0, 10, 0.99, 2),  # class without GT: ignored
]

# Class 0, thr 0.5: T F T F T, n_pos 3; precision 1, 1/2, 2/3, 2/4, 3/5.
#   envelope at the TPs: 1, max(2/3, 2/4, 3/5) = 2/3, 3/5 -> AP = (1 + 2/3 + 3/5) / 3 = 34/45
# Class 0, thr 0.7: T F F F T; precision at TPs 1 and 2/5 -> AP = (1 + 2/5) / 3 = 7/15
# Class 1 (both thr): F T, n_pos 1 -> precision 1/2 at the TP -> AP 1/2
# Class 3: GT, no prediction -> AP 0, counted in the mean. Class 2: NaN, not counted.
EXPECTED_AP = np.array([[34 / 45, 0.5, np.nan, 0.0], [7 / 15, 0.5, np.nan, 0.0]])
EXPECTED_MAP = np.array([(34 / 45 + 0.5) / 3, (7 / 15 + 0.5) / 3])


def as_tensors(rows):
    return (
        torch.tensor([r[0] for r in rows], dtype=torch.int64),
        torch.tensor([r[1:3] for r in rows], dtype=torch.float32).reshape(-1, 2),
        torch.tensor([r[3] for r in rows], dtype=torch.float32),
        torch.tensor([r[4] for r in rows], dtype=torch.int64),
    )


def make_metric(thresholds=(0.5, 0.7)) -> TemporalActionDetectionMAP:
    return TemporalActionDetectionMAP(GT, INDEX, num_classes=4, tiou_thresholds=list(thresholds))


def test_hand_case_all_rules() -> None:
    metric = make_metric()
    metric.update(*as_tensors(PREDS))
    out = metric.compute()
    np.testing.assert_allclose(out["per_class_AP"].numpy(), EXPECTED_AP, atol=1e-12)
    np.testing.assert_allclose(out["mAP"].numpy(), EXPECTED_MAP, atol=1e-12)
    assert out["average_mAP"].item() == pytest.approx(EXPECTED_MAP.mean(), abs=1e-12)


def test_updates_split_by_video_give_the_same_result() -> None:
    metric = make_metric()
    for video in (2, 0, 1):  # listing order inside a class only matters for ties within a video
        metric.update(*as_tensors([r for r in PREDS if r[0] == video]))
    np.testing.assert_allclose(metric.compute()["mAP"].numpy(), EXPECTED_MAP, atol=1e-12)


def test_repeated_video_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    metric = make_metric()
    metric.update(*as_tensors(PREDS))
    # A second rank sees v0 again (the sampler's padding), with slightly different numbers.
    monkeypatch.setattr(dm, "_rank", lambda: 1)
    again = [(v, s, e, sc * 0.999, c) for v, s, e, sc, c in PREDS if v == 0]
    metric.update(*as_tensors(again))
    np.testing.assert_allclose(metric.compute()["per_class_AP"].numpy(), EXPECTED_AP, atol=1e-12)


def test_without_dedup_the_repeat_would_change_the_result() -> None:
    # Guards the test above: the repeated rows are not harmless by themselves.
    from asl_tal.metrics.matching import detection_ap

    rows = PREDS + [(v, s, e, sc * 0.999, c) for v, s, e, sc, c in PREDS if v == 0]
    v, seg, sc, lab = (t.numpy() for t in as_tensors(rows))
    metric = make_metric()
    got = detection_ap(metric.gt, v, seg.astype(float), sc.astype(float), lab, 4, np.array([0.5]))
    assert not np.allclose(got[0, :2], EXPECTED_AP[0, :2])


def test_gt_matched_by_the_second_best_overlap() -> None:
    # GT [0,10] and [4,14]. P1 [3,13] s.9: tIoU 7/13 with the first, 9/11 with the second ->
    # takes [4,14]. P2 [4,14] s.8: [4,14] is taken, falls back to [0,10] with tIoU 6/14 = 0.43.
    # thr 0.4: T T -> AP 1.   thr 0.5: T F -> AP 1/2 (n_pos 2, precision 1 at the TP).
    gt = {"a": ann("a", [[0, 10], [4, 14]], [0, 0])}
    metric = TemporalActionDetectionMAP(gt, {"a": 0}, num_classes=1, tiou_thresholds=[0.4, 0.5])
    metric.update(*as_tensors([(0, 3, 13, 0.9, 0), (0, 4, 14, 0.8, 0)]))
    np.testing.assert_allclose(metric.compute()["mAP"].numpy(), [1.0, 0.5], atol=1e-12)


def test_interpolated_envelope() -> None:
    # F T F T T with n_pos 4: precision 0, 1/2, 1/3, 2/4, 3/5 and recall 0, .25, .25, .5, .75.
    # Envelope at the three TPs is 3/5 each -> AP = 0.25 * 3 * 3/5 = 0.45 (raw values: 0.4).
    tp = np.array([[False, True, False, True, True]])
    ap = interpolated_ap(tp, np.zeros(5, dtype=np.int64), np.array([4]))
    assert ap[0, 0] == pytest.approx(0.45, abs=1e-12)


def test_no_prediction_gives_zero_not_nan() -> None:
    metric = make_metric()
    metric.update(*as_tensors([]))
    out = metric.compute()
    np.testing.assert_array_equal(out["mAP"].numpy(), [0.0, 0.0])
    assert out["average_mAP"].item() == 0.0


def test_gt_video_missing_from_index_is_an_error() -> None:
    with pytest.raises(ValueError, match="video_index"):
        TemporalActionDetectionMAP(GT, {"v0": 0}, num_classes=4, tiou_thresholds=[0.5])


def test_empty_gt_is_an_error() -> None:
    with pytest.raises(ValueError, match="no ground-truth"):
        TemporalActionDetectionMAP({"e": ann("e", [], [])}, {"e": 0}, 2, [0.5])


def test_bad_update_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="segments"):
        make_metric().update(
            torch.zeros(3, dtype=torch.int64),
            torch.zeros(3),
            torch.zeros(3),
            torch.zeros(3, dtype=torch.int64),
        )
