"""Results files: ActivityNet-style detections and the Ego4D Moment Queries submission.

ActivityNet results::

    {"version": "...", "results": {video_id: [{"label": name, "score": s, "segment": [a, b]}]},
     "external_data": {}}

Ego4D MQ submission (layout of the challenge's EvalAI page and of the public baselines,
which copy the detection results under ``detect_results``; retrieval results are not
produced here and written empty)::

    {"version": "1.0", "challenge": "ego4d_moment_queries",
     "detect_results": {clip_id: [{"label": name, "score": s, "segment": [a, b]}]},
     "retrieve_results": {}}

:func:`read_results` reads either layout back into flat arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asl_tal.data.annotations import ClassMap

if TYPE_CHECKING:
    from asl_tal.postprocess.decode import Detections

EGO4D_CHALLENGE = "ego4d_moment_queries"


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


def ego4d_mq_submission(
    detections: dict[str, Detections], class_map: ClassMap, version: str = "1.0"
) -> dict:
    """Ego4D MQ submission dict; ``detections`` are keyed by clip id."""
    return {
        "version": version,
        "challenge": EGO4D_CHALLENGE,
        "detect_results": {clip: _entries(det, class_map) for clip, det in detections.items()},
        "retrieve_results": {},
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


def write_ego4d_mq_submission(
    path: str | Path,
    detections: dict[str, Detections],
    class_map: ClassMap,
    version: str = "1.0",
) -> Path:
    """Write :func:`ego4d_mq_submission` to ``path``."""
    return write_json(path, ego4d_mq_submission(detections, class_map, version))


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


def _check_entry(path: Path, video_id: str, i: int, entry: object) -> None:
    where = f"{path}: video {video_id!r} entry {i}"
    if not isinstance(entry, dict):
        raise SubmissionError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in ("label", "score", "segment"):
        if key not in entry:
            raise SubmissionError(f"{where}: missing field {key!r}")
    if not isinstance(entry["label"], str):
        raise SubmissionError(f"{where}: field 'label' must be a string")
    if not isinstance(entry["score"], int | float) or isinstance(entry["score"], bool):
        raise SubmissionError(f"{where}: field 'score' must be a number")
    seg = entry["segment"]
    if not isinstance(seg, list | tuple) or len(seg) != 2:
        raise SubmissionError(f"{where}: field 'segment' must be [start, end]")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in seg):
        raise SubmissionError(f"{where}: field 'segment' must hold two numbers")


def read_results(path: str | Path) -> ResultRows:
    """Read an ActivityNet results file (or an Ego4D MQ submission's ``detect_results``).

    Raises:
        SubmissionError: malformed JSON or layout, a missing or mistyped field, a
            non-finite score or segment, or a segment with end < start.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: results file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SubmissionError(f"{path}: malformed JSON ({err})") from err
    key = "detect_results" if isinstance(data, dict) and "detect_results" in data else "results"
    results = data.get(key) if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise SubmissionError(f"{path}: top-level field 'results' (an object) is missing")
    for video_id, entries in results.items():
        if not isinstance(entries, list):
            raise SubmissionError(f"{path}: video {video_id!r}: expected a list of detections")
    try:
        rows = [
            (vid, i, e["label"], float(e["score"]), float(e["segment"][0]), float(e["segment"][1]))
            for vid, entries in results.items()
            for i, e in enumerate(entries)
            if isinstance(e["label"], str) and len(e["segment"]) == 2
        ]
        complete = len(rows) == sum(len(entries) for entries in results.values())
    except (KeyError, TypeError, ValueError, IndexError):
        complete = False
    if not complete:
        for video_id, entries in results.items():
            for i, entry in enumerate(entries):
                _check_entry(path, video_id, i, entry)
        raise SubmissionError(f"{path}: malformed detections")
    cols = list(zip(*rows, strict=True)) if rows else [()] * 6
    out = ResultRows(
        video_ids=np.array(cols[0], dtype=object),
        entry_index=np.array(cols[1], dtype=np.int64),
        labels=np.array(cols[2], dtype=object),
        scores=np.array(cols[3], dtype=np.float64),
        segments=np.stack([np.array(cols[4]), np.array(cols[5])], axis=1).reshape(-1, 2),
    )
    checks = (
        (~np.isfinite(out.scores), "field 'score' is not finite"),
        (~np.isfinite(out.segments).all(axis=1), "field 'segment' is not finite"),
        (out.segments[:, 1] < out.segments[:, 0], "field 'segment' has end < start"),
    )
    for bad, message in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise SubmissionError(
                f"{path}: video {out.video_ids[i]!r} entry {out.entry_index[i]}: {message} "
                f"({out.scores[i] if 'score' in message else out.segments[i].tolist()})"
            )
    return out
