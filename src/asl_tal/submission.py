"""Results files: writing detections in the layouts other tools read, reading them back checked.

``output_format`` picks the layout (:data:`OUTPUT_FORMATS`, :func:`write_results`):

* ``activitynet`` — ActivityNet results JSON::

    {"version": "...", "results": {video_id: [{"label": name, "score": s, "segment": [a, b]}]},
     "external_data": {}}

* ``ego4d`` — Ego4D Moment Queries challenge submission JSON::

    {"version": "1.0", "challenge": "ego4d_moment_queries",
     "detect_results": {clip_uid: [entry, ...]}, "retrieve_results": {clip_uid: [entry, ...]}}

  with entries as above. ``detect_results`` holds every detection of a clip by descending
  score; ``retrieve_results`` the ``retrieval_top_k`` best moments of each class detected in
  the clip, all in one list by descending score (the challenge's retrieval scorer groups a
  clip's moments by label and reads each class's list in file order).

* ``actionformer`` — ActionFormer's ``eval_results.pkl``: a pickled dict of parallel arrays,
  one row per detection (videos in order, each by descending score): ``video-id`` (list of
  str), ``t-start`` / ``t-end`` (float64 seconds), ``label`` (int64 class ids, the
  annotation file's ``label_id``), ``score`` (float64).

:func:`read_results` reads an ActivityNet results file (or an Ego4D submission, whose
detections stand under ``detect_results``) back into flat arrays, refusing any malformed entry.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np
import torch

from asl_tal.config_blocks import ConfigValueError
from asl_tal.data.annotations import ClassMap, read_json
from asl_tal.outputs import write_atomically
from asl_tal.postprocess.decode import Detections

_REAL_TYPES = frozenset((int, float))  # what JSON numbers parse to (bool is its own type)
_FIELD_NAMES = ("label", "score", "segment")
OUTPUT_FORMATS = ("activitynet", "ego4d", "actionformer")
EGO4D_VERSION = "1.0"
EGO4D_CHALLENGE = "ego4d_moment_queries"
ACTIONFORMER_KEYS = ("video-id", "t-start", "t-end", "label", "score")
# moments per (clip, class) in an Ego4D submission's retrieve_results unless told otherwise
DEFAULT_RETRIEVAL_TOP_K = 50


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


def check_output_format(output_format: str, retrieval_top_k: int = DEFAULT_RETRIEVAL_TOP_K) -> None:
    """Refuse an unknown ``output_format`` or a ``retrieval_top_k`` below 1 (one line)."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigValueError(
            f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}"
        )
    if type(retrieval_top_k) is not int or retrieval_top_k < 1:
        raise ConfigValueError(
            f"retrieval_top_k must be a positive integer, got {show_value(retrieval_top_k)}"
        )


def _by_score(det: Detections) -> Detections:
    """``det`` on the CPU, sorted by descending score (ties keep their order)."""
    order = torch.argsort(det.scores.detach().cpu(), descending=True, stable=True)
    return Detections(*(x.detach().cpu()[order] for x in (det.segments, det.scores, det.labels)))


def top_k_per_class(det: Detections, k: int) -> Detections:
    """The ``k`` highest-scoring detections of each class of ``det``, by descending score."""
    ranked = _by_score(det)
    labels = ranked.labels.numpy()
    by_class = np.argsort(labels, kind="stable")  # score order kept within each class
    _, first, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    rank_in_class[by_class] = np.arange(len(labels)) - np.repeat(first, counts)
    keep = torch.from_numpy(np.flatnonzero(rank_in_class < k))
    return Detections(ranked.segments[keep], ranked.scores[keep], ranked.labels[keep])


def ego4d_mq_submission(
    detections: dict[str, Detections], class_map: ClassMap, retrieval_top_k: int
) -> dict:
    """Ego4D Moment Queries submission dict from per-clip detections (seconds, clip-relative).

    ``detect_results``: every detection of each clip by descending score.
    ``retrieve_results``: per clip, the ``retrieval_top_k`` best moments of each class
    (:func:`top_k_per_class`), one list by descending score. Every clip gets both keys,
    with an empty list when it has no detection.
    """
    check_output_format("ego4d", retrieval_top_k)
    return {
        "version": EGO4D_VERSION,
        "challenge": EGO4D_CHALLENGE,
        "detect_results": {
            clip: _entries(_by_score(det), class_map) for clip, det in detections.items()
        },
        "retrieve_results": {
            clip: _entries(top_k_per_class(det, retrieval_top_k), class_map)
            for clip, det in detections.items()
        },
    }


def actionformer_results(detections: dict[str, Detections]) -> dict:
    """ActionFormer's evaluation-results dict: parallel per-detection arrays (module doc)."""
    ranked = [(video, _by_score(det)) for video, det in detections.items()]
    segments = np.concatenate(
        [np.zeros((0, 2))] + [d.segments.double().numpy().reshape(-1, 2) for _, d in ranked]
    )
    return {
        "video-id": [video for video, det in ranked for _ in range(len(det))],
        "t-start": segments[:, 0].copy(),
        "t-end": segments[:, 1].copy(),
        "label": np.concatenate(
            [np.zeros(0, dtype=np.int64)] + [d.labels.numpy().astype(np.int64) for _, d in ranked]
        ),
        "score": np.concatenate([np.zeros(0)] + [d.scores.double().numpy() for _, d in ranked]),
    }


def write_results(
    path: str | Path,
    detections: dict[str, Detections],
    class_map: ClassMap,
    output_format: str,
    retrieval_top_k: int,
) -> Path:
    """Write ``detections`` to ``path`` in ``output_format`` (:data:`OUTPUT_FORMATS`), in one
    step (:func:`~asl_tal.outputs.write_atomically`: an interrupted write leaves the previous
    file whole), creating the parent folder.

    ``retrieval_top_k`` is read by the ``ego4d`` layout only (moments per clip and class).
    """
    check_output_format(output_format, retrieval_top_k)
    if output_format == "activitynet":
        content = json.dumps(activitynet_results(detections, class_map)).encode()
    elif output_format == "ego4d":
        content = json.dumps(ego4d_mq_submission(detections, class_map, retrieval_top_k)).encode()
    else:
        content = pickle.dumps(actionformer_results(detections))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: f.write(content))
    return path


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
