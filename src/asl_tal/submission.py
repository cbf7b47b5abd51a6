"""Results files: writing ActivityNet-style detections, reading them back checked.

ActivityNet results::

    {"version": "...", "results": {video_id: [{"label": name, "score": s, "segment": [a, b]}]},
     "external_data": {}}

:func:`read_results` reads it (or an Ego4D Moment Queries submission, whose detections
stand under ``detect_results``) back into flat arrays, refusing any malformed entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asl_tal.data.annotations import ClassMap, read_json

if TYPE_CHECKING:
    from asl_tal.postprocess.decode import Detections

_REAL_TYPES = frozenset((int, float))  # what JSON numbers parse to (bool is its own type)
_FIELD_NAMES = ("label", "score", "segment")


class SubmissionError(ValueError):
    """Bad results file; the message names the file, the video, the entry and the field."""


def _entries(det: Detections, class_map: ClassMap) -> list[dict]:
    segments = det.segments.detach().cpu().double().tolist()
    scores = det.scores.detach().cpu().double().tolist()
    labels = det.labels.detach().cpu().tolist()
    return [
        {"label": class_map.names[c], "score": s, "segment": seg}
        for seg, s, c in zip(segments, scores, labels, strict=True)
    ]


def activitynet_results(
    detections: dict[str, Detections], class_map: ClassMap, version: str = "1.3"
) -> dict:
    """ActivityNet results dict from per-video detections (segments in seconds)."""
    return {
        "version": version,
        "results": {vid: _entries(det, class_map) for vid, det in detections.items()},
        "external_data": {},
    }


def write_json(path: str | Path, data: dict) -> Path:
    """Write ``data`` as JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_activitynet_results(
    path: str | Path,
    detections: dict[str, Detections],
    class_map: ClassMap,
    version: str = "1.3",
) -> Path:
    """Write :func:`activitynet_results` to ``path``."""
    return write_json(path, activitynet_results(detections, class_map, version))


@dataclass(frozen=True)
class ResultRows:
    """Every entry of a results file, flattened in file order.

    Attributes:
        video_ids: ``(N,)`` str, the video (or clip) of each entry.
        entry_index: ``(N,)`` int64 position of the entry in its video's list.
        labels: ``(N,)`` str class names.
        scores: ``(N,)`` float64.
        segments: ``(N, 2)`` float64 seconds.
    """

    video_ids: np.ndarray
    entry_index: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    segments: np.ndarray


def show_value(value: object, limit: int = 60) -> str:
    """``repr`` of a bad value, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        return f"field 'label' must be a string, got {show_value(label)}"
    if type(score) not in _REAL_TYPES:
        return f"field 'score' must be a number, got {show_value(score)}"
    if not isinstance(seg, list) or len(seg) != 2:
        return f"field 'segment' must be [start, end], got {show_value(seg)}"
    if not all(type(x) in _REAL_TYPES for x in seg):
        return f"field 'segment' must hold two numbers, got {show_value(seg)}"
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


def check_result_values(source: str | Path, rows: ResultRows) -> None:
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


def read_results(path: str | Path) -> ResultRows:
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
    check_result_values(path, rows)
    return rows


def _float_or_inf(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf")
