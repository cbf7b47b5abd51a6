"""Shared core of the detection metrics: tIoU, GT grouping, greedy matching and AP.

Everything here is plain numpy over flat arrays. Predictions and GT are grouped by
``(video, class)``; a prediction only ever meets the GT of its own group. The ActivityNet
protocol (``docs/data.md`` §4) is reproduced exactly:

* per class, predictions are ranked by descending score; equal scores put the one listed
  later first (a stable ascending sort, reversed);
* each prediction takes the unmatched GT of its group with the highest tIoU >= threshold
  (equal tIoUs: the GT listed later first, as a reversed ascending ``argsort`` gives);
* AP is the area under the monotone envelope of the precision-recall curve.

The greedy matching is sequential per ``(video, class, threshold)`` lane, so it advances all
lanes together, one prediction per lane per step; the number of steps is the longest lane,
counting only predictions that overlap some GT of their group by at least a threshold.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from asl_tal.data.annotations import VideoAnnotation


@dataclass(frozen=True)
class GroundTruth:
    """Flat GT arrays.

    Attributes:
        video_idx: ``(M,)`` int64 video index.
        segments: ``(M, 2)`` float64 ``[start, end]`` seconds.
        labels: ``(M,)`` int64 class ids.
    """

    video_idx: np.ndarray
    segments: np.ndarray
    labels: np.ndarray


def segment_tiou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Element-wise tIoU of ``pred (..., 2)`` and ``gt (..., 2)`` (broadcast); 0 if no union."""
    inter = np.clip(
        np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0]), 0, None
    )
    union = (pred[..., 1] - pred[..., 0]) + (gt[..., 1] - gt[..., 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def ranking_order(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(N,)`` permutation: class ascending, score descending, later-listed first on ties."""
    by_score = np.argsort(scores, kind="stable")[::-1]
    return by_score[np.argsort(labels[by_score], kind="stable")]


def group_pairs(pred_keys: np.ndarray, gt_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (prediction, GT) pairs with equal group key.

    Args:
        pred_keys: ``(N,)`` int64 group key per prediction (negative = no group).
        gt_keys: ``(M,)`` int64 group key per GT (non-negative).

    Returns:
        ``pred_idx (Q,)``, ``gt_idx (Q,)``: pairs ordered by prediction, then by GT index.
    """
    gt_order = np.argsort(gt_keys, kind="stable")
    sorted_keys = gt_keys[gt_order]
    lo = np.searchsorted(sorted_keys, pred_keys, side="left")
    hi = np.searchsorted(sorted_keys, pred_keys, side="right")
    counts = np.where(pred_keys >= 0, hi - lo, 0)
    pred_idx = np.repeat(np.arange(len(pred_keys)), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(len(pred_idx)) - np.repeat(starts, counts)
    return pred_idx, gt_order[np.repeat(lo, counts) + within]


def _segment_starts(keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def rank_in_runs(keys: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal values (``keys`` sorted)."""
    starts = _segment_starts(keys)
    run_len = np.diff(np.r_[starts, len(keys)])
    return np.arange(len(keys)) - np.repeat(starts, run_len)


def greedy_match(
    pair_pred: np.ndarray,
    pair_gt: np.ndarray,
    pair_tiou: np.ndarray,
    pred_group: np.ndarray,
    num_preds: int,
    num_gt: int,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Greedy one-to-one matching of ranked predictions to GT, for every threshold.

    Args:
        pair_pred: ``(Q,)`` ranked prediction index of each candidate pair (0 = best ranked).
        pair_gt: ``(Q,)`` GT index of each pair.
        pair_tiou: ``(Q,)`` tIoU of each pair.
        pred_group: ``(N,)`` group id of each ranked prediction (lanes never share GT).
        num_preds: ``N``.
        num_gt: ``M``.
        thresholds: ``(T,)`` tIoU thresholds.

    Returns:
        ``(T, N)`` bool: True where the prediction is a true positive at that threshold.
    """
    n_thr = len(thresholds)
    tp = np.zeros((n_thr, num_preds), dtype=bool)
    keep = pair_tiou >= thresholds.min() if n_thr else np.zeros(len(pair_tiou), dtype=bool)
    pair_pred, pair_gt, pair_tiou = pair_pred[keep], pair_gt[keep], pair_tiou[keep]
    # Per prediction, candidates by tIoU descending, later GT first on ties.
    order = np.lexsort((-pair_gt, -pair_tiou, pair_pred))
    pair_pred, pair_gt, pair_tiou = pair_pred[order], pair_gt[order], pair_tiou[order]
    first = _segment_starts(pair_pred)
    if len(first) == 0:
        return tp
    cand_pred = pair_pred[first]
    cand_start = first
    cand_end = np.r_[first[1:], len(pair_pred)]
    best = pair_tiou[first]

    # Items: (prediction, threshold) with at least one GT at tIoU >= threshold.
    item_cand, item_thr = np.nonzero(best[None, :] >= thresholds[:, None])[::-1]
    lane = pred_group[cand_pred[item_cand]] * n_thr + item_thr
    by_lane = np.lexsort((cand_pred[item_cand], lane))
    item_cand, item_thr, lane = item_cand[by_lane], item_thr[by_lane], lane[by_lane]
    step = rank_in_runs(lane)
    by_step = np.argsort(step, kind="stable")
    item_cand, item_thr, step = item_cand[by_step], item_thr[by_step], step[by_step]
    bounds = np.r_[_segment_starts(step), len(step)]

    matched = np.zeros(n_thr * max(num_gt, 1), dtype=bool)
    for a, b in itertools.pairwise(bounds):
        cand, thr = item_cand[a:b], item_thr[a:b]
        lengths = cand_end[cand] - cand_start[cand]
        offsets = np.cumsum(lengths) - lengths
        flat = np.repeat(cand_start[cand] - offsets, lengths) + np.arange(lengths.sum())
        flat_thr = np.repeat(thr, lengths)
        state = flat_thr * num_gt + pair_gt[flat]
        free = (pair_tiou[flat] >= thresholds[flat_thr]) & ~matched[state]
        free_pos = np.flatnonzero(free)
        pick = np.searchsorted(free_pos, offsets)
        pick_ok = pick < len(free_pos)
        pick_ok[pick_ok] = free_pos[pick[pick_ok]] < (offsets + lengths)[pick_ok]
        chosen = free_pos[pick[pick_ok]]
        matched[state[chosen]] = True
        tp[thr[pick_ok], cand_pred[cand[pick_ok]]] = True
    return tp


def interpolated_ap(tp: np.ndarray, pred_class: np.ndarray, num_pos: np.ndarray) -> np.ndarray:
    """AP per threshold and class from ranked true-positive flags.

    The area under the monotone envelope of precision over recall: each true positive adds
    ``1 / n_pos`` of recall at the highest precision reached at or after it.

    Args:
        tp: ``(T, N)`` bool, predictions ranked by class then score.
        pred_class: ``(N,)`` int64 class of each ranked prediction (non-decreasing).
        num_pos: ``(C,)`` GT count per class.

    Returns:
        ``(T, C)`` float64; NaN where ``num_pos`` is 0, 0 for classes without predictions.
    """
    n_thr, num_classes = tp.shape[0], len(num_pos)
    ap = np.zeros((n_thr, num_classes))
    rank = rank_in_runs(pred_class) + 1
    thr_idx, pos = np.nonzero(tp)
    if len(pos):
        cls = pred_class[pos]
        run_key = thr_idx * num_classes + cls
        k = rank_in_runs(run_key) + 1
        precision = k / rank[pos]
        width = int(k.max())
        envelope = np.full((n_thr * num_classes, width), -np.inf)
        envelope[run_key, k - 1] = precision
        envelope = np.maximum.accumulate(envelope[:, ::-1], axis=1)[:, ::-1]
        npos = num_pos[cls].astype(np.float64)
        recall_step = k / npos - (k - 1) / npos
        np.add.at(ap.reshape(-1), run_key, recall_step * envelope[run_key, k - 1])
    ap[:, num_pos == 0] = np.nan
    return ap


def detection_ap(
    gt: GroundTruth,
    pred_video: np.ndarray,
    pred_segments: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: np.ndarray,
    num_classes: int,
    thresholds: np.ndarray,
) -> np.ndarray:
    """ActivityNet detection AP, ``(T, C)`` (NaN for classes without GT).

    Args:
        gt: the evaluated subset's GT.
        pred_video: ``(N,)`` int64 video index; an index without GT (or negative) is a video
            outside the subset and its predictions are false positives.
        pred_segments: ``(N, 2)`` seconds.
        pred_scores: ``(N,)``.
        pred_labels: ``(N,)`` int64; labels outside ``[0, num_classes)`` or without GT are
            ignored (they have no AP).
        num_classes: ``C``.
        thresholds: ``(T,)``.
    """
    tp, index, num_pos = ranked_true_positives(
        gt, pred_video, pred_segments, pred_scores, pred_labels, num_classes, thresholds
    )
    return interpolated_ap(tp, pred_labels[index], num_pos)


def mean_ap(per_class_ap: np.ndarray) -> np.ndarray:
    """``(T,)`` mean over classes with GT (the non-NaN columns) of ``per_class_ap (T, C)``."""
    has_gt = ~np.isnan(per_class_ap).all(axis=0)
    if not has_gt.any():
        raise ValueError("no class has ground truth: mAP is undefined")
    return per_class_ap[:, has_gt].mean(axis=1)


def ground_truth_from_annotations(
    gt: dict[str, VideoAnnotation], video_index: dict[str, int]
) -> GroundTruth:
    """Flatten annotations; every GT video must have an index in ``video_index``."""
    missing = [vid for vid in gt if vid not in video_index]
    if missing:
        raise ValueError(
            f"{len(missing)} GT videos have no entry in video_index (first: {missing[0]!r})"
        )
    videos = list(gt.values())
    counts = [len(v.labels) for v in videos]
    return GroundTruth(
        video_idx=np.repeat(
            np.array([video_index[v.video_id] for v in videos], dtype=np.int64), counts
        ),
        segments=np.concatenate([v.segments.reshape(-1, 2) for v in videos] or [np.zeros((0, 2))])
        .astype(np.float64)
        .reshape(-1, 2),
        labels=np.concatenate([v.labels for v in videos] or [np.zeros(0, np.int64)]).astype(
            np.int64
        ),
    )


def ranked_true_positives(
    gt: GroundTruth,
    pred_video: np.ndarray,
    pred_segments: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: np.ndarray,
    num_classes: int,
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matching of :func:`detection_ap`, exposed for precision-recall curves.

    Arguments as :func:`detection_ap`; predictions it ignores (labels outside the classes
    or without GT) are dropped.

    Returns:
        ``tp (T, N)`` bool and ``index (N,)``, the kept predictions' positions in the inputs,
        both in ranking order (class ascending, score descending); and ``num_pos (C,)``.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    num_pos = np.bincount(gt.labels, minlength=num_classes)[:num_classes]
    scored = (pred_labels >= 0) & (pred_labels < num_classes)
    scored[scored] = num_pos[pred_labels[scored]] > 0
    index = np.flatnonzero(scored)
    index = index[ranking_order(pred_labels[index], pred_scores[index])]
    video, segments, labels = pred_video[index], pred_segments[index], pred_labels[index]
    pred_keys = np.where(video >= 0, video * num_classes + labels, -1)
    pair_pred, pair_gt = group_pairs(pred_keys, gt.video_idx * num_classes + gt.labels)
    tiou = segment_tiou(segments[pair_pred], gt.segments[pair_gt])
    tp = greedy_match(
        pair_pred, pair_gt, tiou, pred_keys, len(pred_keys), len(gt.labels), thresholds
    )
    return tp, index, num_pos


def precision_recall_curve(
    gt: GroundTruth,
    pred_video: np.ndarray,
    pred_segments: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: np.ndarray,
    num_classes: int,
    thresholds: np.ndarray,
    label: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall after each ranked prediction, per tIoU threshold.

    ``label=None`` pools every class (micro): predictions of all classes ranked by score,
    recall over all GT of the classes with GT. Otherwise only class ``label`` counts.

    Returns:
        ``precision (T, N)``, ``recall (T, N)`` and the ``scores (N,)`` (descending) they
        are read at; ``N`` may be 0.
    """
    tp, index, num_pos = ranked_true_positives(
        gt, pred_video, pred_segments, pred_scores, pred_labels, num_classes, thresholds
    )
    labels, scores = pred_labels[index], pred_scores[index]
    if label is None:
        keep = np.argsort(-scores, kind="stable")
        total = num_pos.sum()
    else:
        keep = np.flatnonzero(labels == label)
        total = num_pos[label] if 0 <= label < num_classes else 0
    hits = np.cumsum(tp[:, keep], axis=1)
    precision = hits / np.arange(1, len(keep) + 1)
    recall = hits / total if total > 0 else np.zeros_like(precision)
    return precision, recall, scores[keep]
