"""Offline detection scorer: ``python -m asl_tal.evaluate --gt GT.json --pred PRED.json``.

Scores an ActivityNet-style results file (or an Ego4D MQ submission) against an
annotation JSON with the protocol of ``docs/data.md`` §4, sharing its code with the
:class:`~asl_tal.metrics.detection_map.TemporalActionDetectionMAP` metric.
Predictions on videos outside the evaluated subset count as false positives and labels
without GT in the subset are ignored, as the official protocol does; both are counted in a
warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

from asl_tal.data.annotations import AnnotationError, load_annotations, read_json
from asl_tal.metrics.matching import detection_ap, ground_truth_from_annotations, mean_ap
from asl_tal.submission import ResultRows, SubmissionError

log = logging.getLogger(__name__)

DEFAULT_TIOU = (0.3, 0.4, 0.5, 0.6, 0.7)
_REAL_TYPES = frozenset((int, float))  # what JSON numbers parse to (bool is its own type)
_FIELD_NAMES = ("label", "score", "segment")


class EvaluationError(ValueError):
    """Bad scorer input that is neither the GT's nor the results file's fault (thresholds)."""


def _show(value: object, limit: int = 60) -> str:
    """``repr`` of a bad value, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_tiou_thresholds(tiou_thresholds: Sequence[float]) -> np.ndarray:
    """``(T,)`` float64 thresholds, each in (0, 1]; otherwise :class:`EvaluationError`.

    A threshold of 0 (or below) would count a prediction that does not overlap its GT at all
    as a match, one above 1 can never be reached.
    """
    try:
        values = np.array(tiou_thresholds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"tIoU thresholds must be numbers, got {_show(tiou_thresholds)}"
        ) from None
    if values.size == 0:
        raise EvaluationError("no tIoU threshold given")
    bad = ~((values > 0) & (values <= 1))  # NaN fails both comparisons
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in values[bad])
        raise EvaluationError(f"tIoU thresholds must lie in (0, 1], got {shown}")
    return values


def _entry_problem(entry: object) -> str | None:
    """What is wrong with one results entry (a missing / mistyped field), None if nothing.

    A score must be a real number (int or float, not a bool or a string), a segment a list
    of two real numbers; finiteness and ``end >= start`` are checked on the arrays.
    """
    if not isinstance(entry, dict):
        return f"expected an object, got {type(entry).__name__}"
    for key in _FIELD_NAMES:
        if key not in entry:
            return f"missing field {key!r}"
    label, score, seg = (entry[key] for key in _FIELD_NAMES)
    if not isinstance(label, str):
        return f"field 'label' must be a string, got {_show(label)}"
    if type(score) not in _REAL_TYPES:
        return f"field 'score' must be a number, got {_show(score)}"
    if not isinstance(seg, list) or len(seg) != 2:
        return f"field 'segment' must be [start, end], got {_show(seg)}"
    if not all(type(x) in _REAL_TYPES for x in seg):
        return f"field 'segment' must hold two numbers, got {_show(seg)}"
    return None


def _raise_first_bad_entry(path: Path, results: dict) -> None:
    for video_id, entries in results.items():
        for i, entry in enumerate(entries):
            problem = _entry_problem(entry)
            if problem is not None:
                raise SubmissionError(f"{path}: video {video_id!r} entry {i}: {problem}")


def _columns(flat: list) -> tuple[list, list, list, list] | None:
    """Labels, scores, segments and flat segment coordinates, or None if an entry is bad.

    Whole-list checks at C speed (``map(type, ...)``), no per-entry Python code; the rules are
    those of :func:`_entry_problem`, which finds the culprit when this returns None.
    """
    if not flat:
        return [], [], [], []
    if set(map(type, flat)) != {dict}:
        return None
    try:
        labels, scores, segments = (list(map(itemgetter(key), flat)) for key in _FIELD_NAMES)
    except KeyError:
        return None
    if set(map(type, labels)) != {str} or not set(map(type, scores)) <= _REAL_TYPES:
        return None
    if set(map(type, segments)) != {list} or set(map(len, segments)) != {2}:
        return None
    coords = list(chain.from_iterable(segments))
    if not set(map(type, coords)) <= _REAL_TYPES:
        return None
    return labels, scores, segments, coords


def _check_values(source: str | Path, rows: ResultRows) -> None:
    """Finite scores and segments, ``end >= start``; names the first bad entry in file order."""
    bad_score = ~np.isfinite(rows.scores)
    bad_segment = ~np.isfinite(rows.segments).all(axis=1)
    backwards = rows.segments[:, 1] < rows.segments[:, 0]
    bad = bad_score | bad_segment | backwards
    if not bad.any():
        return
    i = int(np.argmax(bad))
    if bad_score[i]:
        problem = f"field 'score' is not finite, got {float(rows.scores[i])!r}"
    elif bad_segment[i]:
        problem = f"field 'segment' is not finite, got {rows.segments[i].tolist()}"
    else:
        problem = f"field 'segment' has end < start, got {rows.segments[i].tolist()}"
    more = int(bad.sum()) - 1
    raise SubmissionError(
        f"{source}: video {rows.video_ids[i]!r} entry {rows.entry_index[i]}: {problem}"
        + (f" (and {more} more bad entries)" if more else "")
    )


def read_predictions(path: str | Path) -> ResultRows:
    """Read and validate an ActivityNet results file (or an Ego4D MQ submission).

    Reads through :func:`~asl_tal.data.annotations.read_json` (so a repeated key or a too
    deep file is refused) and checks every entry: ``label`` a string, ``score`` a finite
    real number, ``segment`` two finite real numbers with ``end >= start`` (a zero-length
    prediction is allowed, unlike a GT segment). JSON strings and booleans are not numbers.

    Raises:
        SubmissionError: naming the file, the video, the entry and the field.
    """
    path = Path(path)
    data = read_json(path, error=SubmissionError, kind="results file")
    key = "detect_results" if isinstance(data, dict) and "detect_results" in data else "results"
    results = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise SubmissionError(
            f"{path}: expected an object with field 'results', got {type(data).__name__}"
        )
    if key not in data:
        raise SubmissionError(f"{path}: top-level field 'results' (an object) is missing")
    if not isinstance(results, dict):
        raise SubmissionError(
            f"{path}: top-level field {key!r} must be an object, got {type(results).__name__}"
        )
    for video_id, entries in results.items():
        if not isinstance(entries, list):
            raise SubmissionError(
                f"{path}: video {video_id!r}: expected a list of detections, "
                f"got {type(entries).__name__}"
            )
    columns = _columns(list(chain.from_iterable(results.values())))
    if columns is None:
        _raise_first_bad_entry(path, results)
        raise AssertionError("a results entry failed the array checks but not the entry checks")
    labels, scores, _, coords = columns
    counts = np.fromiter(map(len, results.values()), dtype=np.int64, count=len(results))
    try:
        score_array = np.array(scores, dtype=np.float64)
        segment_array = np.array(coords, dtype=np.float64).reshape(-1, 2)
    except OverflowError:  # an int too large for a float: not finite
        score_array = np.array([_float_or_inf(x) for x in scores], dtype=np.float64)
        segment_array = np.array([_float_or_inf(x) for x in coords], dtype=np.float64)
        segment_array = segment_array.reshape(-1, 2)
    starts = np.cumsum(counts) - counts
    rows = ResultRows(
        video_ids=np.repeat(np.array(list(results), dtype=object), counts),
        entry_index=np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts),
        labels=np.array(labels, dtype=object),
        scores=score_array,
        segments=segment_array,
    )
    _check_values(path, rows)
    return rows


def _float_or_inf(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def _lookup(values: np.ndarray, table: dict[str, int]) -> np.ndarray:
    """``(N,)`` int64 index of each string in ``table``, -1 when absent."""
    unique, inverse = np.unique(values.astype(str), return_inverse=True)
    return np.array([table.get(u, -1) for u in unique], dtype=np.int64)[inverse].reshape(-1)


def evaluate_results(
    gt_path: str | Path,
    pred: str | Path | ResultRows,
    subset: str | None = None,
    tiou_thresholds: Sequence[float] = DEFAULT_TIOU,
) -> dict:
    """Score predictions against the GT of ``subset`` (None = every video of the file).

    Returns:
        ``{"tiou": [...], "mAP": [...], "average_mAP": x, "per_class_AP": {name: [...]}}``,
        fractions in [0, 1]; ``per_class_AP`` lists the classes with GT in the subset.

    Raises:
        AnnotationError: bad GT file, or no GT segment in ``subset``.
        SubmissionError: bad results file (see :func:`read_predictions`).
        EvaluationError: a tIoU threshold outside (0, 1].
    """
    thresholds = check_tiou_thresholds(tiou_thresholds)
    gt, class_map = load_annotations(gt_path, None if subset is None else [subset])
    video_index = {vid: i for i, vid in enumerate(gt)}
    gt_arrays = ground_truth_from_annotations(gt, video_index)
    if len(gt_arrays.labels) == 0:
        raise AnnotationError(f"{gt_path}: subset {subset!r} has no ground-truth segment")
    if isinstance(pred, ResultRows):
        source: str | Path = "<predictions>"
        rows = pred
        _check_values(source, rows)
    else:
        source = pred
        rows = read_predictions(pred)
    if len(rows.scores) == 0:
        log.warning("%s: no predictions at all: every AP is 0", source)
    video = _lookup(rows.video_ids, video_index)
    labels = _lookup(rows.labels, {name: i for i, name in enumerate(class_map.names)})
    num_pos = np.bincount(gt_arrays.labels, minlength=class_map.num_classes)

    outside = video < 0
    if outside.any():
        log.warning(
            "%d predictions on %d videos outside the evaluated GT subset: false positives",
            int(outside.sum()),
            len(np.unique(rows.video_ids[outside].astype(str))),
        )
    no_gt = (labels < 0) | (num_pos[labels.clip(min=0)] == 0)
    if no_gt.any():
        log.warning(
            "%d predictions with %d labels that have no GT in the subset: ignored",
            int(no_gt.sum()),
            len(np.unique(rows.labels[no_gt].astype(str))),
        )
    per_class = detection_ap(
        gt_arrays, video, rows.segments, rows.scores, labels, class_map.num_classes, thresholds
    )
    mean = mean_ap(per_class)
    return {
        "tiou": thresholds.tolist(),
        "mAP": mean.tolist(),
        "average_mAP": float(mean.mean()),
        "per_class_AP": {
            class_map.names[c]: per_class[:, c].tolist() for c in np.flatnonzero(num_pos > 0)
        },
    }


def format_table(metrics: dict) -> str:
    """Per-threshold mAP table in percent."""
    lines = ["tIoU    mAP (%)"]
    lines += [
        f"{t:<7.2f} {m * 100:6.2f}" for t, m in zip(metrics["tiou"], metrics["mAP"], strict=True)
    ]
    lines.append(f"average {metrics['average_mAP'] * 100:6.2f}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one ``error: ...`` line, exit status 2 (as argparse's own)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> dict:
    """Score, print the table, write ``--out``; bad input raises (see :func:`cli`)."""
    parser = _Parser(prog="python -m asl_tal.evaluate", description=__doc__)
    parser.add_argument("--gt", required=True, help="annotation JSON (our format)")
    parser.add_argument("--pred", required=True, help="ActivityNet-style results JSON")
    parser.add_argument("--subset", default=None, help="subset to score (default: all videos)")
    parser.add_argument(
        "--tiou", type=float, nargs="+", default=list(DEFAULT_TIOU), help="each in (0, 1]"
    )
    parser.add_argument("--out", default=None, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    metrics = evaluate_results(args.gt, args.pred, args.subset, args.tiou)
    print(format_table(metrics))
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(metrics, indent=2))
        except OSError as err:
            raise EvaluationError(f"{out}: cannot write the metrics ({err})") from err
    return metrics


INPUT_ERRORS = (AnnotationError, SubmissionError, EvaluationError)


def cli(argv: Sequence[str] | None = None) -> int:
    """:func:`main` for the command line: bad input is one ``error: ...`` line, status 2."""
    try:
        main(argv)
    except INPUT_ERRORS as err:
        print("error: " + " ".join(str(err).split("\n")), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
