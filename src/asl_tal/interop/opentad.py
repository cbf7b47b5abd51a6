"""OpenTAD's annotation layout → our annotation JSON (``docs/interop.md`` §2).

OpenTAD keeps ``{"database": {video: {"subset", "duration", "frame", "annotations":
[{"segment": [start, end], "label": name}]}}}`` (seconds, a frame count instead of a frame
rate, no class ids), the class names one per line in ``category_idx.txt`` (line order = class
id) and videos without features in ``missing_files.txt`` (one id per line). Its THUMOS loader
skips instances labelled ``Ambiguous``, and its datasets and evaluator drop repeated
instances (same label, start and end within 1 ms).

:func:`opentad_to_json` writes what our loaders read: ``fps = frame / duration``,
``label_id`` from the class file, the dropped labels and repeated instances left out, the
block-listed videos left out; :class:`OpenTADConversion` says what was left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from asl_tal.data.annotations import AnnotationError, read_json
from asl_tal.interop.releases import InvalidSegments, instance_entry, stripped_lines, video_entry

DROPPED_LABELS = ("Ambiguous",)
# instances of one label whose start and end differ by at most this (seconds) are one
DUPLICATE_TOLERANCE = 1e-3


@dataclass
class OpenTADConversion:
    """The converted annotations and what the conversion left out.

    Attributes:
        data: ``{"version", "database"}`` in our layout (``docs/data.md`` §2).
        class_names: class names by id.
        blocked: block-listed video ids that were in the annotation file (left out).
        blocked_absent: block-listed ids the annotation file does not have.
        dropped: dropped label → number of instances left out.
        duplicates: repeated instances left out.
        without_fps: videos without ``frame`` (no ``fps`` written).
        subsets: subset → number of videos written.
    """

    data: dict
    class_names: list[str]
    blocked: list[str] = field(default_factory=list)
    blocked_absent: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    duplicates: int = 0
    without_fps: list[str] = field(default_factory=list)
    subsets: Counter = field(default_factory=Counter)

    def summary(self) -> list[str]:
        """One line per fact a user should know about the conversion."""
        lines = [
            f"{sum(self.subsets.values())} videos ("
            + ", ".join(f"{n} {s}" for s, n in sorted(self.subsets.items()))
            + f"), {len(self.class_names)} classes"
        ]
        if self.blocked:
            lines.append(f"left out {len(self.blocked)} block-listed videos: {self.blocked}")
        if self.blocked_absent:
            lines.append(
                f"{len(self.blocked_absent)} block-listed ids are not in the annotation file: "
                f"{self.blocked_absent}"
            )
        for label, count in sorted(self.dropped.items()):
            lines.append(f"dropped {count} instances labelled {label!r} (as OpenTAD does)")
        if self.duplicates:
            lines.append(f"dropped {self.duplicates} repeated instances (same label and times)")
        if self.without_fps:
            lines.append(
                f"{len(self.without_fps)} videos have no 'frame' count, so no fps (first: "
                f"{self.without_fps[0]!r}): set dataset.fps or dataset.default_fps"
            )
        return lines


def read_class_file(path: str | Path) -> list[str]:
    """``category_idx.txt``: one class name per line, the line order is the class id."""
    path = Path(path)
    names = [name for _, name in stripped_lines(path)]
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != len(names):
        empty = next(i for i, line in enumerate(lines, start=1) if not line.strip())
        raise AnnotationError(f"{path}: line {empty} is empty (one class name per line)")
    repeated = [name for name, n in Counter(names).items() if n > 1]
    if repeated:
        raise AnnotationError(f"{path}: class {repeated[0]!r} is listed more than once")
    return names


def read_block_list(path: str | Path) -> list[str]:
    """``missing_files.txt``: one video id per line."""
    return [video_id for _, video_id in stripped_lines(Path(path))]


def _number(value: object, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnnotationError(f"{where}: field {name!r} must be a number, got {value!r}")
    return float(value)


def _positive(value: object, where: str, name: str) -> float:
    number = _number(value, where, name)
    if not number > 0:
        raise AnnotationError(f"{where}: field {name!r} must be > 0, got {value!r}")
    return number


def _read_database(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise AnnotationError(f"{path}: expected a JSON object with a 'database' object")
    return data["database"]


def _annotations(path: Path, video_id: str, video: dict) -> list[dict]:
    anns = video.get("annotations", [])
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise AnnotationError(
            f"{path}: video {video_id!r}: field 'annotations' must be a list of objects"
        )
    return anns


def _segment(ann: dict, where: str) -> tuple[float, float]:
    segment = ann.get("segment")
    if not isinstance(segment, list | tuple) or len(segment) != 2:
        raise AnnotationError(f"{where}: field 'segment' must be [start, end], got {segment!r}")
    return _number(segment[0], where, "segment"), _number(segment[1], where, "segment")


def _is_repeat(kept: list[dict], label: str, start: float, end: float) -> bool:
    return any(
        k["label"] == label
        and abs(k["segment"][0] - start) <= DUPLICATE_TOLERANCE
        and abs(k["segment"][1] - end) <= DUPLICATE_TOLERANCE
        for k in kept
    )


def opentad_to_json(
    annotation_file: str | Path,
    class_file: str | Path | None = None,
    block_list: str | Path | None = None,
    dropped_labels: Iterable[str] = DROPPED_LABELS,
    skip_invalid: bool = False,
) -> OpenTADConversion:
    """Convert an OpenTAD annotation file (module docstring).

    Args:
        annotation_file: OpenTAD's annotation JSON.
        class_file: ``category_idx.txt``; None = the sorted labels of the file (what OpenTAD
            writes when its class map is missing), the dropped labels left out.
        block_list: ``missing_files.txt``; None = no video left out.
        dropped_labels: labels whose instances are left out (OpenTAD's THUMOS loader skips
            ``Ambiguous``).
        skip_invalid: drop instances with a negative start or ``end <= start`` (counted)
            instead of stopping.

    Raises:
        AnnotationError: a malformed file; the message names the file, the video, the
            annotation and the field.
    """
    path = Path(annotation_file)
    database = _read_database(path)
    dropped_set = set(dropped_labels)
    for video_id, video in database.items():
        if not isinstance(video, dict):
            raise AnnotationError(f"{path}: video {video_id!r}: expected an object")
    if class_file is None:
        labels = {
            a.get("label")
            for video_id, video in database.items()
            for a in _annotations(path, video_id, video)
        }
        names = sorted(str(label) for label in labels - dropped_set if label is not None)
    else:
        names = read_class_file(class_file)
    class_ids = {name: i for i, name in enumerate(names)}
    blocked = set(read_block_list(block_list)) if block_list is not None else set()

    result = OpenTADConversion(data={}, class_names=names)
    result.blocked = sorted(blocked & set(database))
    result.blocked_absent = sorted(blocked - set(database))
    invalid = InvalidSegments(skip_invalid)
    out: dict[str, dict] = {}
    for video_id, video in database.items():
        if video_id in blocked:
            continue
        where = f"{path}: video {video_id!r}"
        subset = video.get("subset")
        if not isinstance(subset, str) or not subset:
            raise AnnotationError(f"{where}: field 'subset' must be a subset name, got {subset!r}")
        duration = _positive(video.get("duration"), where, "duration")
        fps = None
        if video.get("frame") is None:
            result.without_fps.append(video_id)
        else:
            fps = _positive(video["frame"], where, "frame") / duration
        entry = video_entry(subset, duration, fps)
        for index, ann in enumerate(_annotations(path, video_id, video)):
            ann_where = f"{where}: annotation {index}"
            label = ann.get("label")
            if label in dropped_set:
                result.dropped[label] += 1
                continue
            if label not in class_ids:
                source = class_file if class_file is not None else "the class list"
                raise AnnotationError(f"{ann_where}: field 'label' {label!r} is not in {source}")
            start, end = _segment(ann, ann_where)
            if not invalid.accept(start, end, ann_where, ("segment[0]", "segment[1]")):
                continue
            if _is_repeat(entry["annotations"], label, start, end):
                result.duplicates += 1
                continue
            entry["annotations"].append(instance_entry(label, class_ids[label], start, end))
        out[video_id] = entry
        result.subsets[subset] += 1
    invalid.log_summary()
    result.data = {"version": f"converted from OpenTAD's {path.name}", "database": out}
    return result


# OpenTAD's LoadFeats formats that our feature reader reads (docs/data.md §2)
READABLE_FORMATS = ("npy", "npz", "pt")


@dataclass(frozen=True)
class OpenTADFeatures:
    """OpenTAD's feature layout: ``<folder>/<prefix><video><suffix>.<format>``, ``(T, C)``.

    Attributes:
        folder: OpenTAD's ``data_path``.
        format: its ``feat_format`` (``npy``, ``npz`` with key ``feats``, ``pt``).
        prefix, suffix: its ``LoadFeats`` prefix and suffix.
        feature_stride: frames between features (its ``feature_stride`` ×
            ``sample_stride``); None = not given.
        offset_frames: frame of the first feature's centre (its ``offset_frames``).
    """

    folder: Path
    format: str = "npy"
    prefix: str = ""
    suffix: str = ""
    feature_stride: int | None = None
    offset_frames: int | None = None

    def __post_init__(self) -> None:
        if self.format not in READABLE_FORMATS:
            raise AnnotationError(
                f"{self.folder}: feature format {self.format!r} is not read here (only "
                f"{', '.join(READABLE_FORMATS)}): save the features as .npy first"
            )

    @property
    def file_ext(self) -> str:
        """Our ``dataset.file_ext``: the suffix and the format's extension."""
        return f"{self.suffix}.{self.format}"

    def missing(self, video_ids: Iterable[str]) -> list[str]:
        """The videos without a feature file."""
        return [
            video_id
            for video_id in video_ids
            if not (self.folder / f"{self.prefix}{video_id}{self.file_ext}").is_file()
        ]

    def overrides(self) -> dict[str, object]:
        """Our ``dataset.*`` values for this layout. OpenTAD centres feature ``g`` at frame
        ``offset_frames + g · stride``, ours at ``g · stride + window / 2``, so the window
        is twice the offset."""
        values: dict[str, object] = {
            "dataset.feat_dir": str(self.folder),
            "dataset.file_prefix": self.prefix,
            "dataset.file_ext": self.file_ext,
        }
        if self.feature_stride is not None:
            values["dataset.feat_stride"] = self.feature_stride
        if self.offset_frames:
            values["dataset.feat_window"] = 2 * self.offset_frames
        return values
