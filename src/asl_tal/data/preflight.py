"""Pre-flight check of every feature file a run will read, from the files' headers only.

:class:`~asl_tal.data.features.FeatureReader` finds a bad file only when it reaches it (a
file only the test subset uses after the whole training run), and nothing there compares
a file's length with its video's duration. :func:`check_feature_files` opens every file
of every stream *header-only* (shape and dtype, no feature data) before training starts
and reports every problem at once in one :class:`PreflightError`.

What is read per format (no full read anywhere):

* ``.npy``: ``numpy.lib.format.read_magic`` + ``read_array_header_{1,2}_0``; the file
  must be exactly ``header + prod(shape) * itemsize`` bytes (shorter = truncated).
* ``.npz``: the ``feats.npy`` member's ``.npy`` header inside the zip (a truncated
  archive has no central directory and fails to open); the member's uncompressed size
  must equal header + data.
* ``.pt``: ``torch.load(weights_only=True, mmap=True)``: the storages are memory-mapped,
  not read (about 20 KB of reads for a 160 MB tensor); a truncated archive fails to open.
  Files in the legacy (pre-zip) format cannot be mapped and are loaded in full.
* HDF5: ``h5py`` dataset ``shape`` / ``dtype``; each HDF5 file is opened once (HDF5
  itself refuses a truncated file: its stored end-of-file is past the real one).

Checks: the file exists and is readable; the array is 2-D ``(T, D)`` with ``T >= 1``;
the dtype is a floating type; ``D`` equals the stream's ``input_dim``; ``T`` agrees with
the video's duration (below); several streams of one video agree within one step.
NaN/Inf values are data, not header, and are still caught by the loader.

Expected length. :class:`~asl_tal.data.batch.VideoMeta` puts feature ``g`` at frames
``[g * stride, g * stride + window)`` (centre ``g * stride + window / 2``), so a video of
``duration * fps`` frames holds ``(duration * fps - window) / stride + 1`` complete windows
(:func:`expected_num_feats`; at least 1). ``fps``, ``stride`` and ``window`` are resolved
exactly as the dataset does (:func:`~asl_tal.data.dataset.video_meta`: the ``fps``
override, else the JSON's per-video fps, else ``default_fps``; ``window`` defaults to
``stride``). With ``feat_stride`` None (features per second, ``fps = T / duration``) every
``T`` is consistent and the length check is skipped.

Default tolerance (:class:`LengthTolerance`): a length ``T`` passes when
``|T - expected| <= max(relative * expected, absolute + window / stride)`` with
``relative = 0.05`` and ``absolute = 2`` steps.

* ``window / stride`` steps: extractors differ in how they treat the last, incomplete
  window. Dropping it gives ``floor((N - window) / stride) + 1`` (up to one step under the
  real-valued formula); padding the tail so that every frame is covered, or centring one
  clip on every stride position, gives up to ``ceil(N / stride)``, i.e. up to
  ``(window - stride) / stride + 1 = window / stride`` steps more (THUMOS I3D,
  stride 4 / window 16: 4 steps; EPIC/Ego4D SlowFast 16/32: 2; ActivityNet 16/16: 1).
* ``absolute = 2`` steps: the frame count is ``duration * fps`` only up to rounding (the
  JSON's duration has two decimals, the decoder's frame count is an integer and may drop
  or repeat a frame at the end), one step either way, plus one spare step.
* ``relative = 5 %``: container / metadata durations (YouTube durations in ActivityNet,
  variable-frame-rate videos re-encoded at a fixed rate) differ from the decoded length by
  a fraction of a second to a couple of seconds, i.e. about 1-2 % of typical lengths;
  5 % leaves room for that while any wrong setting stays far outside it: a wrong stride
  (4 vs 8) is off by 50 %, 25 vs 30 fps by 17-20 %, features of 10 s of an 80 s video by
  87 %. (29.97 vs 30 fps, 0.1 %, passes, as it should; 24 vs 25 fps, 4 %, would also
  pass: pass a smaller ``relative`` for such data.) A tail difference of a few steps does
  not misalign the grid (it is anchored at the first frame); only a rate error does, and
  5 % bounds that.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.dataset import SampleConfig, video_meta
from asl_tal.data.features import HDF5_EXTS, NPZ_KEY, FeatureError, FeatureStream

log = logging.getLogger(__name__)

NUM_LISTED = 20
"""Problems written out in full in the :class:`PreflightError` message."""

# problem fields that count as length mismatches (warnings when ``lengths_as_warnings``)
LENGTH_FIELDS = ("length", "streams")


@dataclass(frozen=True)
class LengthTolerance:
    """How far a feature length may be from the expected one (see the module docstring).

    Attributes:
        relative: fraction of the expected number of steps.
        absolute: steps, on top of ``window / stride`` (the extractors' tail handling).
        streams: steps by which the streams of one video may differ from each other.
    """

    relative: float = 0.05
    absolute: float = 2.0
    streams: float = 1.0

    def margin(self, expected: float, stride: float, window: float) -> float:
        """Allowed ``|T - expected|`` in steps."""
        return max(self.relative * expected, self.absolute + window / stride)


def expected_num_feats(duration: float, fps: float, stride: float, window: float) -> float:
    """Feature steps of a video: ``max((duration * fps - window) / stride + 1, 1)``.

    Real-valued (no floor): the number of complete ``window``-frame windows every
    ``stride`` frames in ``duration * fps`` frames, the grid of :class:`VideoMeta`.
    """
    return max((duration * fps - window) / stride + 1.0, 1.0)


@dataclass(frozen=True)
class FeatureHeader:
    """Shape and dtype of one video's feature array, read without its data.

    Attributes:
        shape: the array's shape; ``(T, D)`` in a valid file.
        dtype: dtype name (``"float32"``, ``"bfloat16"``, ...).
        is_float: whether the dtype is a real floating type.
    """

    shape: tuple[int, ...]
    dtype: str
    is_float: bool


@dataclass(frozen=True)
class Problem:
    """One finding of the check.

    Attributes:
        path: the feature file (a folder for ``feat_dir``; None for a per-video problem).
        video_id: the video (None for a folder problem).
        field: ``file``, ``key``, ``shape``, ``dtype``, ``input_dim``, ``length``,
            ``streams``, ``fps`` or ``feat_dir``.
        detail: what is wrong, with the numbers.
    """

    path: Path | None
    video_id: str | None
    field: str
    detail: str

    @property
    def is_length(self) -> bool:
        return self.field in LENGTH_FIELDS

    def __str__(self) -> str:
        where = [str(self.path)] if self.path is not None else []
        if self.video_id is not None:
            where.append(f"video {self.video_id!r}")
        return ": ".join([*where, self.field, self.detail])


def format_problems(problems: Sequence[Problem], limit: int = NUM_LISTED) -> str:
    """The first ``limit`` problems, one a line, then ``... and N more``."""
    lines = [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


class PreflightError(FeatureError):
    """Bad feature files found by :func:`check_feature_files`.

    Attributes:
        problems: every problem found (the message lists the first 20).
    """

    def __init__(self, message: str, problems: Sequence[Problem]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


@dataclass
class PreflightReport:
    """What a passing check saw.

    Attributes:
        num_videos: distinct videos checked.
        num_files: feature files (HDF5: datasets) checked.
        lengths: video id -> ``T`` of each stream, in stream order.
        warnings: length problems logged instead of raised (``lengths_as_warnings``).
    """

    num_videos: int = 0
    num_files: int = 0
    lengths: dict[str, tuple[int, ...]] = field(default_factory=dict)
    warnings: tuple[Problem, ...] = ()


class _MissingKey(FeatureError):
    """The file opens but lacks the video's member / dataset (problem field ``key``)."""


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header bytes)`` of the ``.npy`` stream at ``fp``'s start."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:  # 3.0 is only written for structured dtypes with non-ASCII names
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(s) for s in shape), dtype, fp.tell()


def _numpy_header(shape: tuple[int, ...], dtype: np.dtype) -> FeatureHeader:
    return FeatureHeader(shape, str(dtype), dtype.kind == "f")


def _check_size(have: int, header: int, shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
    if dtype.hasobject:
        return  # pickled data; rejected as a non-float dtype
    want = header + math.prod(shape) * dtype.itemsize
    if have != want:
        state = "truncated" if have < want else "longer than its header says"
        raise FeatureError(
            f"{what} {state}: header {header} B + {'x'.join(map(str, shape))} x "
            f"{dtype.itemsize} B data = {want} B expected, found {have} B"
        )


def _read_npy(path: Path) -> FeatureHeader:
    with open(path, "rb") as fp:
        shape, dtype, header = _npy_header(fp)
        _check_size(os.fstat(fp.fileno()).st_size, header, shape, dtype, "file")
    return _numpy_header(shape, dtype)


def _read_npz(path: Path) -> FeatureHeader:
    with zipfile.ZipFile(path) as archive:
        member = f"{NPZ_KEY}.npy"
        try:
            info = archive.getinfo(member)
        except KeyError:
            names = sorted(n.removesuffix(".npy") for n in archive.namelist())
            raise _MissingKey(f"no field {NPZ_KEY!r} (file has {names})") from None
        with archive.open(info) as fp:
            shape, dtype, header = _npy_header(fp)
        _check_size(info.file_size, header, shape, dtype, f"member {member!r}")
    return _numpy_header(shape, dtype)


def _read_pt(path: Path) -> FeatureHeader:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap can only be used" not in str(err):
            raise
        log.debug("%s: legacy torch.save format, loading it in full", path)
        value = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(value, dict) and NPZ_KEY in value:
        value = value[NPZ_KEY]
    if not isinstance(value, torch.Tensor):
        raise FeatureError(f"expected a tensor, got {type(value).__name__}")
    dtype = value.dtype
    return FeatureHeader(
        tuple(value.shape), str(dtype).removeprefix("torch."), dtype.is_floating_point
    )


class _HeaderReader:
    """Headers of feature files, keeping each HDF5 file open (and each failure) once."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.h5: dict[Path, h5py.File | Exception] = {}

    def _h5file(self, path: Path) -> h5py.File:
        if path not in self.h5:
            try:
                self.h5[path] = self.stack.enter_context(h5py.File(path, "r"))
            except Exception as err:
                self.h5[path] = err
        opened = self.h5[path]
        if isinstance(opened, Exception):
            raise opened
        return opened

    def _read_h5(self, path: Path, key: str) -> FeatureHeader:
        h5 = self._h5file(path)
        if key not in h5:
            raise _MissingKey(f"no dataset {key!r}")
        node = h5[key]
        if not isinstance(node, h5py.Dataset):
            raise FeatureError(f"{key!r} is a {type(node).__name__}, not a dataset")
        return _numpy_header(tuple(int(s) for s in node.shape), node.dtype)

    def read(self, stream: FeatureStream, video: VideoAnnotation) -> FeatureHeader:
        """Header of ``video``'s file in ``stream``; :class:`FeatureError` naming the
        cause (the caller adds file and video) when it is missing or unreadable."""
        path = stream.path_of(video.video_id, video.subset)
        if not path.is_file():
            raise FeatureError("not found")
        ext = path.suffix.lower()  # dispatched as features.load_array does
        try:
            if ext == ".npy":
                return _read_npy(path)
            if ext == ".npz":
                return _read_npz(path)
            if ext == ".pt":
                return _read_pt(path)
            if ext in HDF5_EXTS:
                return self._read_h5(path, f"{stream.prefix}{video.video_id}")
        except FeatureError:
            raise
        except Exception as err:
            raise FeatureError(f"cannot read header ({type(err).__name__}: {err})") from err
        raise FeatureError(f"unsupported feature extension {ext!r}")


def _shape_problems(
    header: FeatureHeader, stream: FeatureStream, path: Path, video_id: str
) -> list[Problem]:
    found = []
    if not header.is_float:
        found.append(Problem(path, video_id, "dtype", f"expected a float type, got {header.dtype}"))
    if len(header.shape) != 2:
        found.append(
            Problem(path, video_id, "shape", f"must be 2-D (T, D), got shape {header.shape}")
        )
        return found
    if header.shape[1] != stream.input_dim:
        found.append(
            Problem(
                path,
                video_id,
                "input_dim",
                f"expected width {stream.input_dim}, got {header.shape[1]} (shape {header.shape})",
            )
        )
    if header.shape[0] == 0:
        found.append(Problem(path, video_id, "shape", f"no feature steps (shape {header.shape})"))
    return found


def _unique_videos(
    videos: Iterable[VideoAnnotation] | Mapping[str, VideoAnnotation],
) -> list[VideoAnnotation]:
    items = videos.values() if isinstance(videos, Mapping) else videos
    unique: dict[str, VideoAnnotation] = {}
    for video in items:
        unique.setdefault(video.video_id, video)
    return list(unique.values())


def check_feature_files(
    videos: Iterable[VideoAnnotation] | Mapping[str, VideoAnnotation],
    streams: Sequence[FeatureStream],
    config: SampleConfig,
    *,
    tolerance: LengthTolerance | None = None,
    lengths_as_warnings: bool = False,
) -> PreflightReport:
    """Check every stream's feature file of every video from its header (no data read).

    Args:
        videos: every video the run uses, of all its subsets (a mapping's values are used;
            a video id seen twice, e.g. a subset used for validation and test, is checked
            once).
        streams: the feature streams, in :class:`FeatureReader` order.
        config: the timing keys ``fps``, ``default_fps``, ``feat_stride``,
            ``feat_window`` (resolved as :func:`video_meta` does); the rest is unused.
        tolerance: allowed length mismatch (None = :class:`LengthTolerance` defaults:
            5 % or ``2 + window / stride`` steps, whichever is larger).
        lengths_as_warnings: log length mismatches (against the duration, or between
            streams) as one warning instead of raising them.

    Returns:
        A :class:`PreflightReport` (the ``T`` of every stream of every video).

    Raises:
        PreflightError: listing the first 20 problems (file, video, field and numbers) and
            ``... and N more``; ``.problems`` holds them all.
    """
    if not streams:
        raise ValueError("check_feature_files needs at least one feature stream")
    tolerance = tolerance or LengthTolerance()
    items = _unique_videos(videos)
    problems: list[Problem] = []
    report = PreflightReport(num_videos=len(items))
    usable = []
    for stream in streams:
        if stream.feat_dir.is_dir():
            usable.append(stream)
        else:
            problems.append(
                Problem(
                    stream.feat_dir,
                    None,
                    "feat_dir",
                    f"feature folder not found (needed by {len(items)} video(s))",
                )
            )
    with ExitStack() as stack:
        reader = _HeaderReader(stack)
        for video in items:
            problems.extend(_check_video(video, usable, config, tolerance, reader, report))
    errors = [p for p in problems if not (lengths_as_warnings and p.is_length)]
    warnings = [p for p in problems if lengths_as_warnings and p.is_length]
    if warnings:
        log.warning(
            "feature pre-flight: %d length mismatch(es) (ignored: lengths_as_warnings):\n%s",
            len(warnings),
            format_problems(warnings),
        )
    report.warnings = tuple(warnings)
    if errors:
        counts = ", ".join(f"{k} {n}" for k, n in Counter(p.field for p in errors).items())
        bad_videos = len({p.video_id for p in errors if p.video_id is not None})
        raise PreflightError(
            f"feature pre-flight check failed: {len(errors)} problem(s) ({counts}) in "
            f"{bad_videos} of {len(items)} video(s), {report.num_files} file(s) checked:\n"
            + format_problems(errors),
            errors,
        )
    return report


def _check_video(
    video: VideoAnnotation,
    streams: Sequence[FeatureStream],
    config: SampleConfig,
    tolerance: LengthTolerance,
    reader: _HeaderReader,
    report: PreflightReport,
) -> list[Problem]:
    """Problems of one video's files; records its lengths in ``report``."""
    vid = video.video_id
    found: list[Problem] = []
    lengths: list[tuple[Path, int]] = []
    for stream in streams:
        path = stream.path_of(vid, video.subset)
        report.num_files += 1
        try:
            header = reader.read(stream, video)
        except FeatureError as err:
            field_name = "key" if isinstance(err, _MissingKey) else "file"
            found.append(Problem(path, vid, field_name, str(err)))
            continue
        shape_problems = _shape_problems(header, stream, path, vid)
        found.extend(shape_problems)
        if len(header.shape) == 2 and not shape_problems:
            lengths.append((path, header.shape[0]))
    if lengths and len(lengths) == len(streams):
        report.lengths[vid] = tuple(t for _, t in lengths)
    if len(lengths) > 1:
        low, high = min(t for _, t in lengths), max(t for _, t in lengths)
        if high - low > tolerance.streams:
            listing = ", ".join(f"{p}: T={t}" for p, t in lengths)
            found.append(
                Problem(
                    None,
                    vid,
                    "streams",
                    f"stream lengths differ by {high - low} steps (> {tolerance.streams:g}): "
                    + listing,
                )
            )
    if config.feat_stride is None or not lengths:
        return found
    try:
        meta = video_meta(video, lengths[0][1], config)
    except ValueError as err:
        return [*found, Problem(None, vid, "fps", str(err))]
    expected = expected_num_feats(meta.duration, meta.fps, meta.stride, meta.window)
    margin = tolerance.margin(expected, meta.stride, meta.window)
    for path, num in lengths:
        if abs(num - expected) > margin:
            found.append(
                Problem(
                    path,
                    vid,
                    "length",
                    f"{num} feature steps, expected {expected:.1f} = (duration "
                    f"{meta.duration:g} s x fps {meta.fps:g} - window {meta.window:g}) / "
                    f"stride {meta.stride:g} + 1; off by {num - expected:+.1f} steps "
                    f"({(num - expected) / expected:+.0%}), tolerance {margin:.1f}",
                )
            )
    return found
