"""Official annotation releases → our annotation JSON (``docs/data.md`` §2 and §5).

Each ``*_to_json`` function reads the files of one release in their official layout and
returns ``{"version": ..., "database": {video_id: {...}}}``; :func:`write_annotations`
saves it. Every instance carries ``label``, ``label_id`` (the official class index where
the release has one) and ``segment`` in seconds.

Errors name the file, the row or video, and the field. An instance with ``end <= start``
(or a negative start) is an error unless ``skip_invalid`` is set, in which case it is
dropped and the count is logged. Segment times are written as released, not clipped to
the duration (the loaders decide about segments past the end).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from asl_tal.data.annotations import AnnotationError, read_json

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


class InvalidSegments:
    """Raises on a bad segment, or counts and drops it when ``skip`` is set."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.messages: list[str] = []

    def accept(self, start: float, end: float, where: str, fields: tuple[str, str]) -> bool:
        """True if ``[start, end]`` is a valid segment; ``fields`` names its two fields."""
        if start < 0:
            message = f"{where}: field {fields[0]!r} is negative ({start})"
        elif end <= start:
            message = f"{where}: field {fields[1]!r} ({end}) <= {fields[0]!r} ({start})"
        else:
            return True
        if not self.skip:
            raise AnnotationError(message)
        self.messages.append(message)
        return False

    def log_summary(self) -> None:
        if self.messages:
            log.warning(
                "skipped %d invalid segment(s); first: %s", len(self.messages), self.messages[0]
            )


def instance_entry(label: str, label_id: int, start: float, end: float) -> dict:
    """One ``annotations`` item of a video: label, class index and segment in seconds."""
    return {"label": label, "label_id": int(label_id), "segment": [start, end]}


def video_entry(subset: str, duration: float, fps: float | None) -> dict:
    """One ``database`` entry with no annotations yet (no ``fps`` key when ``fps`` is None)."""
    video: dict = {"subset": subset, "duration": duration}
    if fps is not None:
        video["fps"] = fps
    video["annotations"] = []
    return video


def _float(value: str, where: str, field: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: field {field!r} is not a number: {value!r}") from None


def _positive_duration(value: str, where: str, field: str) -> float:
    duration = _float(value, where, field)
    if not duration > 0:
        raise AnnotationError(f"{where}: field {field!r} must be > 0, got {value!r}")
    return duration


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` of a CSV file with a header, checking ``required`` columns."""
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{path}: missing column(s) {missing}")
        for row in reader:
            yield reader.line_num, row


def _text_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, whitespace-split tokens)`` of the non-empty lines of a text file."""
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            yield number, line.split()


def stripped_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-empty lines (names may contain spaces)."""
    if not path.is_file():
        raise AnnotationError(f"{path}: file not found")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            yield number, line.strip()


def write_annotations(data: dict, path: str | Path) -> Path:
    """Write ``data`` as JSON to ``path`` (parent folders created). Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def parse_timestamp(value: str, where: str = "<timestamp>", field: str = "timestamp") -> float:
    """``HH:MM:SS.ff`` → seconds, e.g. ``00:01:02.50`` → 62.5."""
    match = _TIMESTAMP.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise AnnotationError(f"{where}: field {field!r} is not HH:MM:SS.ff: {value!r}")
    hours, minutes, seconds = match.groups()
    if int(minutes) >= 60 or float(seconds) >= 60:
        raise AnnotationError(f"{where}: field {field!r} is out of range: {value!r}")
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 6)


# --------------------------------------------------------------------------- MultiTHUMOS


def _multithumos_subset(video_id: str, where: str) -> str:
    for prefix, subset in (("video_validation_", "validation"), ("video_test_", "test")):
        if video_id.startswith(prefix):
            return subset
    raise AnnotationError(
        f"{where}: video {video_id!r}: name must start with video_validation_ or video_test_"
    )


def _read_class_list(path: Path) -> list[str]:
    """Class names in file order; a line is ``name`` or ``index name``."""
    names = []
    for _, tokens in _text_lines(path):
        names.append(" ".join(tokens[1:]) if tokens[0].isdigit() and len(tokens) > 1 else tokens[0])
    if len(set(names)) != len(names):
        raise AnnotationError(f"{path}: duplicate class names")
    return names


def _read_durations(path: Path) -> dict[str, float]:
    """Video → duration from a THUMOS14-style annotation JSON or ``video duration`` lines."""
    table: dict[str, float] = {}
    if path.suffix == ".json":
        database = read_json(path).get("database")
        if not isinstance(database, dict):
            raise AnnotationError(f"{path}: top-level field 'database' (an object) is missing")
        for video_id, video in database.items():
            where = f"{path}: video {video_id!r}"
            if "duration" not in video:
                raise AnnotationError(f"{where}: missing field 'duration'")
            table[video_id] = _positive_duration(video["duration"], where, "duration")
        return table
    for number, tokens in _text_lines(path):
        where = f"{path}: line {number}"
        if len(tokens) != 2:
            raise AnnotationError(f"{where}: expected 'video duration', got {tokens}")
        table[tokens[0]] = _positive_duration(tokens[1], where, "duration")
    return table


def multithumos_to_json(
    annotation_dir: str | Path,
    durations: str | Path,
    class_list: str | Path | None = None,
    skip_invalid: bool = False,
) -> dict:
    """MultiTHUMOS: one ``<ClassName>.txt`` per class with lines ``video start end``.

    Args:
        annotation_dir: folder of the per-class text files.
        durations: THUMOS14 annotation JSON (``database.<video>.duration``) or a text file
            of ``video duration`` lines.
        class_list: class names in official order (``name`` or ``index name`` per line);
            ``label_id`` is the line position. Default: sorted file names.
        skip_invalid: drop (and count) segments with ``end <= start`` instead of raising.

    No ``fps`` is written: the feature rate of this benchmark is ``T / duration``.
    """
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise AnnotationError(f"{annotation_dir}: annotation folder not found")
    if class_list is None:
        names = sorted(p.stem for p in annotation_dir.glob("*.txt"))
    else:
        names = _read_class_list(Path(class_list))
    if not names:
        raise AnnotationError(f"{annotation_dir}: no class files (*.txt)")
    duration_of = _read_durations(Path(durations))
    invalid = InvalidSegments(skip_invalid)
    database: dict[str, dict] = {}
    for label_id, name in enumerate(names):
        path = annotation_dir / f"{name}.txt"
        for number, tokens in _text_lines(path):
            where = f"{path}: line {number}"
            if len(tokens) != 3:
                raise AnnotationError(f"{where}: expected 'video start end', got {tokens}")
            video_id = tokens[0]
            start = _float(tokens[1], where, "start")
            end = _float(tokens[2], where, "end")
            if not invalid.accept(start, end, f"{where} video {video_id!r}", ("start", "end")):
                continue
            if video_id not in database:
                if video_id not in duration_of:
                    raise AnnotationError(
                        f"{where}: video {video_id!r}: no 'duration' for it in {durations}"
                    )
                subset = _multithumos_subset(video_id, where)
                database[video_id] = video_entry(subset, duration_of[video_id], None)
            database[video_id]["annotations"].append(instance_entry(name, label_id, start, end))
    invalid.log_summary()
    for video in database.values():
        video["annotations"].sort(key=lambda a: (a["segment"], a["label_id"]))
    return {"version": "MultiTHUMOS", "database": dict(sorted(database.items()))}


# --------------------------------------------------------------------------- Charades


def _read_charades_classes(path: Path) -> dict[str, tuple[int, str]]:
    """Code → (label_id, name) from lines ``c000 Holding some clothes`` (id = line order)."""
    classes: dict[str, tuple[int, str]] = {}
    for number, tokens in _text_lines(path):
        if len(tokens) < 2:
            raise AnnotationError(f"{path}: line {number}: expected 'code name', got {tokens}")
        if tokens[0] in classes:
            raise AnnotationError(f"{path}: line {number}: duplicate class code {tokens[0]!r}")
        classes[tokens[0]] = (len(classes), " ".join(tokens[1:]))
    return classes


def charades_to_json(
    csv_files: Mapping[str, str | Path], classes: str | Path, skip_invalid: bool = False
) -> dict:
    """Charades: ``Charades_v1_{train,test}.csv`` with columns ``id``, ``length``, ``actions``.

    Args:
        csv_files: subset name → CSV path, e.g. ``{"training": train, "testing": test}``.
        classes: ``Charades_v1_classes.txt`` (``c000 Holding some clothes`` per line);
            ``label_id`` is the line position (the number in the code), ``label`` the text.
        skip_invalid: drop (and count) segments with ``end <= start`` instead of raising.

    ``actions`` is ``code start end`` items separated by ``;`` and may be empty.
    """
    class_of = _read_charades_classes(Path(classes))
    invalid = InvalidSegments(skip_invalid)
    database: dict[str, dict] = {}
    for subset, path in csv_files.items():
        path = Path(path)
        for line, row in _csv_rows(path, ("id", "length", "actions")):
            video_id = row["id"]
            where = f"{path}: line {line} video {video_id!r}"
            if video_id in database:
                raise AnnotationError(f"{where}: field 'id' repeats an earlier video")
            video = video_entry(subset, _positive_duration(row["length"], where, "length"), None)
            for item in filter(None, (s.strip() for s in (row["actions"] or "").split(";"))):
                tokens = item.split()
                if len(tokens) != 3:
                    raise AnnotationError(f"{where}: field 'actions' item {item!r} not 'code s e'")
                if tokens[0] not in class_of:
                    raise AnnotationError(
                        f"{where}: field 'actions': unknown class code {tokens[0]!r}"
                    )
                start = _float(tokens[1], where, "actions")
                end = _float(tokens[2], where, "actions")
                if invalid.accept(start, end, f"{where} action {item!r}", ("start", "end")):
                    label_id, name = class_of[tokens[0]]
                    video["annotations"].append(instance_entry(name, label_id, start, end))
            database[video_id] = video
    invalid.log_summary()
    return {"version": "Charades_v1", "database": database}


# --------------------------------------------------------------------------- EPIC-Kitchens-100


def _epic_class_names(path: Path) -> dict[int, str]:
    """Class id → key from ``EPIC_100_{verb,noun}_classes.csv`` (columns ``id``, ``key``)."""
    names = {}
    for line, row in _csv_rows(path, ("id", "key")):
        names[int(_float(row["id"], f"{path}: line {line}", "id"))] = row["key"]
    return names


def epic_to_json(
    csv_files: Mapping[str, str | Path],
    video_info: str | Path,
    task: str,
    class_names: str | Path | None = None,
    skip_invalid: bool = False,
) -> dict:
    """EPIC-Kitchens-100: one row per narration; ``task`` picks verb or noun classes.

    Args:
        csv_files: subset → CSV path, e.g. ``{"training": EPIC_100_train.csv,
            "validation": EPIC_100_validation.csv}``; columns ``video_id``,
            ``start_timestamp``, ``stop_timestamp`` (``HH:MM:SS.ff``), ``<task>_class``
            and ``<task>``.
        video_info: ``EPIC_100_video_info.csv`` with ``video_id``, ``duration``, ``fps``.
        task: ``"verb"`` or ``"noun"``; ``label_id`` is ``<task>_class``.
        class_names: optional ``EPIC_100_<task>_classes.csv`` (``id``, ``key``) naming the
            classes; without it a class is named by its most frequent ``<task>`` text
            (ties: alphabetical), so every id has exactly one name.
        skip_invalid: drop (and count) segments with ``stop <= start`` instead of raising.
    """
    if task not in ("verb", "noun"):
        raise ValueError(f"task must be 'verb' or 'noun', got {task!r}")
    id_field = f"{task}_class"
    video_info = Path(video_info)
    info: dict[str, tuple[float, float]] = {}
    for line, row in _csv_rows(video_info, ("video_id", "duration", "fps")):
        where = f"{video_info}: line {line} video {row['video_id']!r}"
        info[row["video_id"]] = (
            _positive_duration(row["duration"], where, "duration"),
            _positive_duration(row["fps"], where, "fps"),
        )
    invalid = InvalidSegments(skip_invalid)
    database: dict[str, dict] = {}
    texts: dict[int, Counter] = {}
    for subset, path in csv_files.items():
        path = Path(path)
        columns = ("video_id", "start_timestamp", "stop_timestamp", id_field, task)
        for line, row in _csv_rows(path, columns):
            video_id = row["video_id"]
            where = f"{path}: line {line} video {video_id!r}"
            start = parse_timestamp(row["start_timestamp"], where, "start_timestamp")
            end = parse_timestamp(row["stop_timestamp"], where, "stop_timestamp")
            label_text = row[task]
            try:
                label_id = int(row[id_field])
            except ValueError:
                raise AnnotationError(
                    f"{where}: field {id_field!r} is not an integer: {row[id_field]!r}"
                ) from None
            if label_id < 0:
                raise AnnotationError(f"{where}: field {id_field!r} is negative: {label_id}")
            if video_id not in database:
                if video_id not in info:
                    raise AnnotationError(f"{where}: video not in {video_info}")
                database[video_id] = video_entry(subset, *info[video_id])
            elif database[video_id]["subset"] != subset:
                raise AnnotationError(f"{where}: video already listed in another subset")
            if invalid.accept(start, end, where, ("start_timestamp", "stop_timestamp")):
                database[video_id]["annotations"].append(
                    instance_entry(label_text, label_id, start, end)
                )
                texts.setdefault(label_id, Counter())[label_text] += 1
    invalid.log_summary()
    if class_names is not None:
        names = _epic_class_names(Path(class_names))
        unknown = sorted(set(texts) - set(names))
        if unknown:
            raise AnnotationError(f"{class_names}: no name for {id_field} id(s) {unknown}")
    else:
        names = {i: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for i, c in texts.items()}
    for video in database.values():
        for ann in video["annotations"]:
            ann["label"] = names[ann["label_id"]]
    return {"version": f"EPIC-KITCHENS-100 ({task})", "database": database}


# --------------------------------------------------------------------------- Ego4D MQ


def _ego4d_instances(
    clip: dict,
    where: str,
    known: list[str] | None,
    primary_only: bool,
    invalid: InvalidSegments,
) -> list[dict]:
    """Instances of one clip over all annotators; duplicates merged (primary if any says so)."""
    instances: dict[tuple[str, float, float], dict] = {}
    for i, annotation in enumerate(clip.get("annotations") or []):
        for j, label in enumerate(annotation.get("labels") or []):
            label_where = f"{where} annotation {i} label {j}"
            for key in ("start_time", "end_time", "label"):
                if key not in label:
                    raise AnnotationError(f"{label_where}: missing field {key!r}")
            name = label["label"]
            if known is not None and name not in known:
                raise AnnotationError(f"{label_where}: field 'label' {name!r} not in class list")
            primary = bool(label.get("primary", False))
            if primary_only and not primary:
                continue
            start = _float(label["start_time"], label_where, "start_time")
            end = _float(label["end_time"], label_where, "end_time")
            if not invalid.accept(start, end, label_where, ("start_time", "end_time")):
                continue
            instance = instances.setdefault(
                (name, start, end), instance_entry(name, -1, start, end)
            )
            instance["primary"] = instance.get("primary", False) or primary
    return list(instances.values())


def ego4d_to_json(
    json_files: Mapping[str, str | Path],
    class_list: str | Path | None = None,
    fps: float | None = 30.0,
    primary_only: bool = False,
    skip_invalid: bool = False,
) -> dict:
    """Ego4D Moment Queries: ``moments_{train,val}.json`` → one entry per clip.

    Args:
        json_files: subset → JSON path, e.g. ``{"training": train, "validation": val}``.
        class_list: class names, one per line, in official order (``label_id`` = line
            position). Default: the sorted set of labels over all given files.
        fps: frame rate written for every clip (Ego4D canonical clips are 30 fps).
        primary_only: keep only labels with ``primary`` true.
        skip_invalid: drop (and count) labels with ``end_time <= start_time``.

    Keys are ``clip_uid``; ``duration = clip_end_sec - clip_start_sec``; segments are the
    labels' clip-relative ``start_time`` / ``end_time``. Labels of all annotators are kept
    (exact duplicates merged); each instance also records ``primary``.
    """
    known = None if class_list is None else [n for _, n in stripped_lines(Path(class_list))]
    if known is not None and len(set(known)) != len(known):
        raise AnnotationError(f"{class_list}: duplicate class names")
    invalid = InvalidSegments(skip_invalid)
    database: dict[str, dict] = {}
    for subset, path in json_files.items():
        path = Path(path)
        videos = read_json(path).get("videos")
        if not isinstance(videos, list):
            raise AnnotationError(f"{path}: top-level field 'videos' (a list) is missing")
        for v, video in enumerate(videos):
            for c, clip in enumerate(video.get("clips") or []):
                where = f"{path}: video {video.get('video_uid', v)!r} clip {c}"
                for key in ("clip_uid", "clip_start_sec", "clip_end_sec"):
                    if key not in clip:
                        raise AnnotationError(f"{where}: missing field {key!r}")
                where = f"{path}: clip {clip['clip_uid']!r}"
                if clip["clip_uid"] in database:
                    raise AnnotationError(f"{where}: field 'clip_uid' repeats an earlier clip")
                start_sec = _float(clip["clip_start_sec"], where, "clip_start_sec")
                end_sec = _float(clip["clip_end_sec"], where, "clip_end_sec")
                if not end_sec > start_sec:
                    raise AnnotationError(f"{where}: field 'clip_end_sec' <= 'clip_start_sec'")
                entry = video_entry(subset, round(end_sec - start_sec, 6), fps)
                entry["annotations"] = _ego4d_instances(clip, where, known, primary_only, invalid)
                database[clip["clip_uid"]] = entry
    invalid.log_summary()
    names = known or sorted({a["label"] for v in database.values() for a in v["annotations"]})
    label_ids = {name: i for i, name in enumerate(names)}
    for entry in database.values():
        for ann in entry["annotations"]:
            ann["label_id"] = label_ids[ann["label"]]
    return {"version": "Ego4D MQ", "database": database}
