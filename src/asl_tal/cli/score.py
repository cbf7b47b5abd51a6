"""Offline detection scorer: ``asl-evaluate --gt GT.json --pred PRED.json``.

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
from pathlib import Path

import numpy as np

from asl_tal.data.annotations import AnnotationError, load_annotations
from asl_tal.metrics.matching import detection_ap, ground_truth_from_annotations, mean_ap
from asl_tal.outputs import OutputError, check_output
from asl_tal.submission import (
    ResultRows,
    SubmissionError,
    check_result_values,
    read_results,
    show_value,
)

log = logging.getLogger(__name__)

DEFAULT_TIOU = (0.3, 0.4, 0.5, 0.6, 0.7)


class EvaluationError(ValueError):
    """Bad scorer input that is neither the GT's nor the results file's fault (thresholds)."""


def check_tiou_thresholds(tiou_thresholds: Sequence[float]) -> np.ndarray:
    """``(T,)`` float64 thresholds, each in (0, 1]; otherwise :class:`EvaluationError`.

    A threshold of 0 (or below) would count a prediction that does not overlap its GT at all
    as a match, one above 1 can never be reached.
    """
    try:
        values = np.array(tiou_thresholds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"tIoU thresholds must be numbers, got {show_value(tiou_thresholds)}"
        ) from None
    if values.size == 0:
        raise EvaluationError("no tIoU threshold given")
    bad = ~((values > 0) & (values <= 1))  # NaN fails both comparisons
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in values[bad])
        raise EvaluationError(f"tIoU thresholds must lie in (0, 1], got {shown}")
    return values


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
        SubmissionError: bad results file (see :func:`~asl_tal.submission.read_results`).
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
        check_result_values(source, rows)
    else:
        source = pred
        rows = read_results(pred)
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
    """Per-threshold mAP table, fractions in [0, 1] (as every other output of the package)."""
    lines = ["tIoU    mAP"]
    lines += [f"{t:<7.2f} {m:.4f}" for t, m in zip(metrics["tiou"], metrics["mAP"], strict=True)]
    lines.append(f"average {metrics['average_mAP']:.4f}")
    return "\n".join(lines)


DESCRIPTION = """\
Score an ActivityNet-style results file (or an Ego4D Moment Queries submission) against an
annotation JSON: mAP at each tIoU threshold and their average, fractions in [0, 1] (the
metrics JSON of --out has the keys of a run's results/test_metrics.json). The protocol is
ActivityNet's: predictions on videos outside the scored subset count as false positives,
labels without ground truth in the subset are ignored; both are counted in a warning."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one ``error: ...`` line, exit status 2 (as argparse's own)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> dict:
    """Score, print the table, write ``--out``; bad input raises (see :func:`cli`)."""
    parser = _Parser(
        prog="asl-evaluate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gt", required=True, help="annotation JSON (our format)")
    parser.add_argument("--pred", required=True, help="ActivityNet-style results JSON")
    parser.add_argument("--subset", default=None, help="subset to score (default: all videos)")
    parser.add_argument(
        "--tiou", type=float, nargs="+", default=list(DEFAULT_TIOU), help="each in (0, 1]"
    )
    parser.add_argument("--out", default=None, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out) if args.out else None
    if out is not None:  # a bad --out fails before the scoring, not after it
        if out.is_dir():
            raise EvaluationError(f"{out}: --out is a directory, not a file name")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise EvaluationError(f"{out}: cannot create its folder ({err})") from err
        check_output(
            out,
            "--out",
            [("the --gt file", args.gt), ("the --pred file", args.pred)],
            ours=is_metrics_file,
            kind="a metrics file of this scorer",
        )
    metrics = evaluate_results(args.gt, args.pred, args.subset, args.tiou)
    print(format_table(metrics))
    if out is not None:
        try:
            out.write_text(json.dumps(metrics, indent=2))
        except OSError as err:
            raise EvaluationError(f"{out}: cannot write the metrics ({err})") from err
    return metrics


def is_metrics_file(path: Path) -> bool:
    """True when ``path`` holds a JSON object in the layout :func:`main` writes (the keys of
    :func:`evaluate_results`, ``recall`` too where a run wrote it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    keys = {"tiou", "mAP", "average_mAP", "per_class_AP"}
    return isinstance(data, dict) and keys <= set(data) <= keys | {"recall"}


INPUT_ERRORS = (AnnotationError, SubmissionError, EvaluationError, OutputError)


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
