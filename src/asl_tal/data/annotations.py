"""Annotation JSON (ActionFormer / ActivityNet layout) and the class map.

Layout (``docs/data.md`` §2)::

    {"version": "...", "database": {
       "<video_id>": {"subset": "training", "duration": 123.4, "fps": 30.0,
                      "annotations": [{"label": "HighJump", "label_id": 11,
                                       "segment": [8.86, 15.01]}]}}}
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class AnnotationError(ValueError):
    """Bad annotation input; the message names the file, the video and the field."""


@dataclass(frozen=True)
class VideoAnnotation:
    """One video of the annotation file.

    Attributes:
        video_id: key in ``database``.
        subset: subset name, lower-cased.
        duration: seconds; None for a video without annotation file (features given
            alone), whose duration follows from its features
            (:func:`~asl_tal.data.dataset.video_meta`).
        fps: frames per second, or None when the file does not give it.
        segments: ``(N, 2)`` float64 ``[start, end]`` in seconds.
        labels: ``(N,)`` int64 class ids (from the :class:`ClassMap`).
        num_clipped: how many segments were clipped to ``[0, duration]`` when loading.
    """

    video_id: str
    subset: str
    duration: float | None
    fps: float | None
    segments: np.ndarray
    labels: np.ndarray
    num_clipped: int = 0


@dataclass(frozen=True)
class ClassMap:
    """Class names indexed by id. Built once from the whole annotation file."""

    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def id_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown label {name!r}") from None

    def to_json(self) -> dict:
        return {"classes": list(self.names)}

    @classmethod
    def from_json(cls, data: dict) -> ClassMap:
        return cls(tuple(data["classes"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ClassMap:
        return cls.from_json(json.loads(Path(path).read_text()))


def read_json(
    path: str | Path,
    *,
    error: type[ValueError] = AnnotationError,
    kind: str = "annotation file",
) -> Any:
    """Read a JSON file; every problem with it raises ``error`` with a one-line message.

    Refused, with the file named: a missing or unreadable file, malformed JSON (bad UTF-8
    included), JSON nested too deeply for the parser, and a key given twice in one object
    (``json`` would silently keep the last copy).

    Args:
        path: the file.
        error: exception class raised (e.g. the results reader's own error).
        kind: what the file is, for the messages ("annotation file", "results file").
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {kind} not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read the {kind} ({err.strerror or err})") from err
    duplicates: list[tuple[dict, list]] = []

    def pairs_to_dict(pairs: list) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            duplicates.append((obj, pairs))
        return obj

    try:
        data = json.loads(raw, object_pairs_hook=pairs_to_dict)
    except RecursionError:
        raise error(
            f"{path}: JSON nested too deeply to parse (more than about "
            f"{sys.getrecursionlimit()} levels of lists or objects)"
        ) from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an int of > 4300 digits
        raise error(f"{path}: malformed JSON ({err})") from err
    if duplicates:
        raise error(_duplicate_key_message(path, data, duplicates))
    return data


def _duplicate_key_message(path: Path, data: object, duplicates: list[tuple[dict, list]]) -> str:
    """Name the first repeated key (in the order the parser closed the objects) and where."""
    obj, pairs = duplicates[0]
    keys = [key for key, _ in pairs]
    key = next(k for i, k in enumerate(keys) if k in keys[:i])
    where = _json_pointer(data, obj)
    if where is None:
        place = "an object dropped by a duplicate key of an enclosing object"
    else:
        place = f"the object at {where}" if where else "the top-level object"
    more = f"; {len(duplicates) - 1} more object(s) repeat keys" if len(duplicates) > 1 else ""
    return (
        f"{path}: duplicate key {key!r} in {place} (given {keys.count(key)} times; "
        f"JSON would keep only the last){more}"
    )


def _json_pointer(root: object, target: object) -> str | None:
    """RFC 6901 pointer to ``target`` (by identity) inside ``root``; None when absent."""
    stack: list[tuple[object, str]] = [(root, "")]
    while stack:
        node, where = stack.pop()
        if node is target:
            return where
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, value in items:
            token = str(key).replace("~", "~0").replace("/", "~1")
            stack.append((value, f"{where}/{token}"))
    return None


def _is_real(value: object) -> bool:
    """An int or float, not a bool (JSON ``true`` / ``false``) and not a string."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite_float(value: int | float) -> float | None:
    """``float(value)``, or None when it is NaN, infinite or an int too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class SegmentTolerance:
    """How far a segment may stick out of ``[0, duration]`` and still be clipped.

    A segment reaching more than ``max(absolute, relative * duration)`` seconds before 0 or
    past the end is an error; one within that margin is clipped (and counted).
    """

    absolute: float = 1.0
    relative: float = 0.05

    def margin(self, duration: float) -> float:
        return max(self.absolute, self.relative * duration)


def build_class_map(database: dict, path: str | Path = "<annotations>") -> ClassMap:
    """Class map from ``label_id`` when every annotation has one, else from sorted names.

    Raises :class:`AnnotationError` when a label carries two ids or two labels share one.
    """
    pairs: dict[str, int | None] = {}
    for video_id, video in database.items():
        for i, ann in enumerate(_annotation_list(video_id, video, path)):
            where = f"{path}: video {video_id!r} annotation {i}"
            name = _label(ann, where)
            label_id = _label_id(ann.get("label_id"), where)
            if name in pairs and pairs[name] != label_id:
                raise AnnotationError(
                    f"{where}: field 'label_id' {label_id} disagrees with {pairs[name]} "
                    f"given earlier for label {name!r}"
                )
            pairs[name] = label_id
    if pairs and all(v is not None for v in pairs.values()):
        num = max(int(v) for v in pairs.values()) + 1
        names = [f"class_{i}" for i in range(num)]
        taken: dict[int, str] = {}
        for name, label_id in pairs.items():
            if label_id in taken:
                raise AnnotationError(
                    f"{path}: field 'label_id' {label_id} is used by both "
                    f"{taken[label_id]!r} and {name!r}"
                )
            taken[label_id] = name
            names[label_id] = name
        return ClassMap(tuple(names))
    return ClassMap(tuple(sorted(pairs)))


def _annotation_list(video_id: str, video: object, path: str | Path) -> list:
    if not isinstance(video, dict):
        raise AnnotationError(f"{path}: video {video_id!r} is not an object")
    anns = video.get("annotations", [])
    if not isinstance(anns, list):
        raise AnnotationError(f"{path}: video {video_id!r}: field 'annotations' is not a list")
    return anns


def _label(ann: object, where: str) -> str:
    """The class name of an annotation: its field ``label``, a non-empty string or an
    integer (written as text); ``null``, booleans, lists and objects are refused."""
    if not isinstance(ann, dict) or "label" not in ann:
        raise AnnotationError(f"{where}: no 'label'")
    value = ann["label"]
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None or isinstance(value, bool):
        shown = json.dumps(value)
    else:
        kinds = {str: "an empty string", float: "a number", list: "a list", dict: "an object"}
        shown = kinds.get(type(value), type(value).__name__)
    raise AnnotationError(
        f"{where}: field 'label' must be a class name (a non-empty string), got {shown}"
    )


def _label_id(value: object, where: str) -> int | None:
    if value is None:
        return None
    if not _is_real(value) or _finite_float(value) is None or value != int(value):
        raise AnnotationError(f"{where}: field 'label_id' must be an integer, got {value!r}")
    if value < 0:
        raise AnnotationError(f"{where}: field 'label_id' must be >= 0, got {value!r}")
    return int(value)


def _positive_number(value: object, where: str, field_name: str) -> float:
    if not _is_real(value):
        raise AnnotationError(f"{where}: field {field_name!r} must be a number, got {value!r}")
    number = _finite_float(value)
    if number is None or number <= 0:
        raise AnnotationError(f"{where}: field {field_name!r} must be > 0, got {value!r}")
    return number


def _segment(ann: dict, where: str) -> tuple[float, float]:
    """``[start, end]``: two real numbers (not strings or booleans), finite, end > start."""
    seg = ann.get("segment")
    if not isinstance(seg, list | tuple) or len(seg) != 2:
        raise AnnotationError(f"{where}: field 'segment' must be [start, end], got {seg!r}")
    if not (_is_real(seg[0]) and _is_real(seg[1])):
        raise AnnotationError(f"{where}: field 'segment' must hold numbers, got {seg!r}")
    start, end = _finite_float(seg[0]), _finite_float(seg[1])
    if start is None or end is None:
        raise AnnotationError(f"{where}: field 'segment' is not finite: {seg!r}")
    if end <= start:
        raise AnnotationError(f"{where}: field 'segment' has end <= start: {seg!r}")
    return start, end


def parse_video(
    video_id: str,
    video: dict,
    class_map: ClassMap,
    path: str | Path,
    *,
    clip_to_duration: bool = True,
    tolerance: SegmentTolerance | None = None,
) -> VideoAnnotation:
    """Validate and convert one ``database`` entry.

    A segment sticking out of ``[0, duration]`` by at most the tolerance margin is clipped
    (when ``clip_to_duration``) and counted in ``num_clipped``; further out, or lying
    entirely outside the video, it is an error.
    """
    where = f"{path}: video {video_id!r}"
    anns = _annotation_list(video_id, video, path)
    for key in ("subset", "duration"):
        if key not in video:
            raise AnnotationError(f"{where}: missing field {key!r}")
    duration = _positive_number(video["duration"], where, "duration")
    fps = video.get("fps")
    fps = None if fps is None else _positive_number(fps, where, "fps")
    margin = (tolerance or SegmentTolerance()).margin(duration)
    segments, labels = [], []
    num_clipped = 0
    for i, ann in enumerate(anns):
        ann_where = f"{where} annotation {i}"
        name = _label(ann, ann_where)
        start, end = _segment(ann, ann_where)
        if start >= duration or end <= 0:
            raise AnnotationError(
                f"{ann_where}: field 'segment' {[start, end]} lies entirely outside the "
                f"video [0, {duration}]"
            )
        if start < -margin or end > duration + margin:
            raise AnnotationError(
                f"{ann_where}: field 'segment' {[start, end]} reaches more than {margin:g} s "
                f"outside the video [0, {duration}]"
            )
        if clip_to_duration and (start < 0 or end > duration):
            start, end = max(start, 0.0), min(end, duration)
            num_clipped += 1
        try:
            labels.append(class_map.id_of(name))
        except KeyError:
            raise AnnotationError(f"{ann_where}: unknown label {name!r}") from None
        segments.append([start, end])
    return VideoAnnotation(
        video_id=video_id,
        subset=str(video["subset"]).lower(),
        duration=duration,
        fps=fps,
        segments=np.asarray(segments, dtype=np.float64).reshape(-1, 2),
        labels=np.asarray(labels, dtype=np.int64),
        num_clipped=num_clipped,
    )


def load_annotations(
    path: str | Path,
    subsets: list[str] | None = None,
    class_map: ClassMap | None = None,
    *,
    clip_to_duration: bool = True,
    tolerance: SegmentTolerance | None = None,
) -> tuple[dict[str, VideoAnnotation], ClassMap]:
    """Load the videos of ``subsets`` (case-insensitive; None = all) and the class map.

    The class map is built from the *whole* file unless one is given. Segments slightly
    outside their video are clipped when ``clip_to_duration`` (training targets); the
    metric's ground truth loads with ``clip_to_duration=False``. Clipped segments are
    counted per video (``VideoAnnotation.num_clipped``) and logged as a warning.
    """
    data = read_json(path)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: top-level field 'database' (an object) is missing")
    class_map = class_map or build_class_map(database, path)
    wanted = None if subsets is None else [str(s).lower() for s in subsets]
    videos = {}
    for video_id, video in database.items():
        subset = str(video.get("subset", "")).lower() if isinstance(video, dict) else ""
        if wanted is not None and subset not in wanted:
            continue
        videos[video_id] = parse_video(
            video_id,
            video,
            class_map,
            path,
            clip_to_duration=clip_to_duration,
            tolerance=tolerance,
        )
    if wanted is not None:
        _check_subsets(path, database, wanted, videos)
    clipped = {vid: v.num_clipped for vid, v in videos.items() if v.num_clipped}
    if clipped:
        log.warning(
            "%s: clipped %d segment(s) in %d video(s) to [0, duration] (e.g. video %r)",
            path,
            sum(clipped.values()),
            len(clipped),
            next(iter(clipped)),
        )
    return videos, class_map


def _check_subsets(
    path: str | Path, database: dict, wanted: list[str], videos: dict[str, VideoAnnotation]
) -> None:
    found = {v.subset for v in videos.values()}
    missing = [s for s in wanted if s not in found]
    if not missing:
        return
    available = sorted(
        {str(v.get("subset", "")).lower() for v in database.values() if isinstance(v, dict)}
    )
    message = f"{path}: field 'subset': no video in subset(s) {missing} (file has {available})"
    if not videos:
        raise AnnotationError(message)
    log.warning(message)
