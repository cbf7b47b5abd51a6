"""Videos given as feature files without annotations: a file or a folder of them.

``(T, D)`` time-major features, ``.npy``, ``.npz`` (key ``feats``) or ``.pt`` named
``<video_id><ext>``, one per video, or ``.h5`` / ``.hdf5`` holding one dataset per video id
(suffixes in any case). :func:`find_videos` lists an input into :class:`VideoSource` items
without reading any feature; :class:`SourceReader` reads them for
:class:`~asl_tal.data.dataset.TALDataset` and turns a video it cannot read into
:class:`UnreadableVideo`, which the dataset yields as a :class:`Skipped` record.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.features import (
    HDF5_EXTS,
    FeatureError,
    check_features,
    hdf5_members,
    load_array,
)

FEATURE_EXTS = (".npy", ".npz", ".pt", *HDF5_EXTS)


@dataclass(frozen=True)
class VideoSource:
    """Where one video's features are: a file, or a dataset (``key``) of an HDF5 file."""

    video_id: str
    path: Path
    key: str | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.key is None else f"{self.path}:{self.key}"


@dataclass(frozen=True)
class Skipped:
    """An input left out: ``what`` (a file, ``file:dataset`` or several) and why."""

    what: str
    reason: str

    def line(self) -> str:
        return f"{self.what}: {' '.join(self.reason.split())}"


@dataclass
class Inventory:
    """The videos of an input and what was left out of it.

    Attributes:
        sources: the videos to read, sorted by file name.
        files: every feature file of the input.
        skipped: inputs that are errors (unreadable, ambiguous).
        ignored: folder entries that are not feature files (unsupported suffix, sub-folders,
            entries that are not regular files).
    """

    sources: list[VideoSource] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignored: list[Skipped] = field(default_factory=list)


class UnreadableVideo(FeatureError):
    """A video of a :class:`SourceReader` whose features cannot be read or are invalid."""

    def __init__(self, skipped: Skipped) -> None:
        super().__init__(skipped.line())
        self.skipped = skipped


def not_regular(path: Path) -> str:
    """What ``path`` is, for an entry that is neither a regular file nor a folder (reading
    a FIFO or a device would block or never end)."""
    if not path.exists():
        return "a broken symbolic link"
    mode = path.stat().st_mode
    if stat.S_ISFIFO(mode):
        kind = "a FIFO"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = "a device"
    return f"not a regular file ({kind})"


def reason(err: Exception, path: Path) -> str:
    """``err``'s message without the leading ``<path>: `` that feature errors carry."""
    message = str(err) if isinstance(err, FeatureError) else f"{type(err).__name__}: {err}"
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def is_feature_file(path: Path) -> bool:
    return path.suffix.lower() in FEATURE_EXTS


def _feature_files(path: Path, inv: Inventory) -> None:
    """Fill ``inv.files`` (and ``inv.ignored``) from ``path``: see :func:`find_videos`."""
    supported = ", ".join(FEATURE_EXTS)
    if path.is_file():
        if not is_feature_file(path):
            raise FeatureError(
                f"input {path}: unsupported feature file suffix {path.suffix!r} (reads {supported})"
            )
        inv.files = [path]
    elif path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.is_dir():
                inv.ignored.append(Skipped(str(entry), "a folder (sub-folders are not read)"))
            elif not entry.is_file():
                inv.ignored.append(Skipped(str(entry), f"{not_regular(entry)}; never opened"))
            elif is_feature_file(entry):
                inv.files.append(entry)
            else:
                inv.ignored.append(
                    Skipped(str(entry), f"unsupported suffix {entry.suffix!r} (reads {supported})")
                )
        if not inv.files:
            raise FeatureError(f"input {path}: no feature files ({supported})")
    elif path.exists():
        raise FeatureError(
            f"input {path}: {not_regular(path)}; give a feature file or a folder of them"
        )
    else:
        raise FileNotFoundError(f"input {path}: no such feature file or folder")


def find_videos(path: str | Path) -> Inventory:
    """The videos named by ``path``: one feature file, or a folder's files sorted by name.

    Raises (before any work) when ``path`` does not exist, is a file of an unsupported
    format or not a regular file, or is a folder without any feature file. Unreadable HDF5
    files and video ids given by two sources are recorded in ``skipped``; other folder
    entries in ``ignored``, among them FIFOs, sockets, devices and broken links, which are
    never opened.
    """
    inv = Inventory()
    _feature_files(Path(path), inv)
    sources: list[VideoSource] = []
    for file in inv.files:
        if file.suffix.lower() not in HDF5_EXTS:
            sources.append(VideoSource(file.stem, file))
            continue
        try:
            datasets, others = hdf5_members(file)
        except FeatureError as err:
            inv.skipped.append(Skipped(str(file), reason(err, file)))
            continue
        if not datasets:
            inv.skipped.append(Skipped(str(file), "HDF5 file without datasets (no videos)"))
        sources.extend(VideoSource(name, file, name) for name in datasets)
        inv.ignored.extend(
            Skipped(f"{file}:{name}", "not an HDF5 dataset (groups are not read)")
            for name in others
        )

    by_id: dict[str, list[VideoSource]] = {}
    for source in sources:
        by_id.setdefault(source.video_id, []).append(source)
    for video_id, same in by_id.items():
        if len(same) > 1:
            inv.skipped.append(
                Skipped(
                    " and ".join(s.name for s in same),
                    f"both give video {video_id!r}; keep one (rename or remove the other)",
                )
            )
    inv.sources = [s for s in sources if len(by_id[s.video_id]) == 1]
    return inv


def unlabelled_videos(
    sources: Iterable[VideoSource], duration: float | None = None
) -> dict[str, VideoAnnotation]:
    """One :class:`VideoAnnotation` without segments per source (``duration`` seconds for
    every video; None: derived from its number of features,
    :func:`~asl_tal.data.dataset.video_meta`)."""
    return {
        s.video_id: VideoAnnotation(
            s.video_id, "", duration, None, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
        )
        for s in sources
    }


class SourceReader:
    """Reads the features of :class:`VideoSource` videos, the reader of a
    :class:`~asl_tal.data.dataset.TALDataset` of videos without annotations.

    Args:
        sources: the videos (see :func:`find_videos`), one per video id.
        input_dim: expected feature width ``D``.
    """

    def __init__(self, sources: Iterable[VideoSource], input_dim: int) -> None:
        self.sources = {s.video_id: s for s in sources}
        self.input_dim = input_dim

    def __call__(self, video_id: str, subset: str = "") -> torch.Tensor:
        """``(D, T)`` float32 features of ``video_id`` (``subset`` is not used).

        Raises:
            UnreadableVideo: the file cannot be read or holds no valid ``(T, D)`` array.
        """
        source = self.sources[video_id]
        try:
            array = load_array(source.path, video_id, source.key)
            array = check_features(array, self.input_dim, source.path, video_id)
        except (FeatureError, OSError, ValueError, TypeError) as err:
            raise UnreadableVideo(Skipped(source.name, reason(err, source.path))) from err
        return torch.from_numpy(np.require(array, requirements="C")).T
