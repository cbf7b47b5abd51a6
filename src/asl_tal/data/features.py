"""Feature readers: one video's pre-extracted features from one or several folders.

A stream is one feature folder. Its file for a video is
``<feat_dir>/<prefix><video_id><ext>`` holding ``(T, D)`` time-major features
(``.npy``; ``.npz`` under key ``feats``; ``.pt`` a tensor), or one HDF5 file per split
(``<feat_dir>/<subset>.h5``, or a configured file) with one ``(T, D)`` dataset per video.
Several streams are resampled to the longest and concatenated along ``D``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from asl_tal.data.transforms import resample_features

HDF5_EXTS = (".h5", ".hdf5")
NPZ_KEY = "feats"


class FeatureError(ValueError):
    """Bad feature input; the message names the file and the video."""


@dataclass(frozen=True)
class FeatureStream:
    """One feature folder.

    Attributes:
        feat_dir: folder of the files (or of the per-split HDF5 files).
        input_dim: expected feature width ``D`` of this stream.
        prefix: file-name prefix before the video id (HDF5: key prefix).
        ext: ``.npy``, ``.npz``, ``.pt``, ``.h5`` or ``.hdf5``.
        hdf5_file: one HDF5 file for every split (relative to ``feat_dir`` unless
            absolute); None = ``<feat_dir>/<subset><ext>``.
    """

    feat_dir: Path
    input_dim: int
    prefix: str = ""
    ext: str = ".npy"
    hdf5_file: str | None = None

    @property
    def is_hdf5(self) -> bool:
        return self.ext in HDF5_EXTS

    def path_of(self, video_id: str, subset: str) -> Path:
        """The file holding ``video_id``'s features.

        Raises:
            FeatureError: the file name (prefix, video id, suffix) is an absolute path or
                holds ``..``, which could lead outside ``feat_dir``.
        """
        if self.is_hdf5:
            return self.feat_dir / (self.hdf5_file or f"{subset}{self.ext}")
        name = Path(f"{self.prefix}{video_id}{self.ext}")
        path = self.feat_dir / name
        # by the name alone (a symbolic link the user put in feat_dir may point anywhere)
        if name.is_absolute() or ".." in name.parts or not name.parts:
            raise FeatureError(
                f"video {video_id!r}: its feature file name {str(name)!r} leads outside the "
                f"feature folder {self.feat_dir} (dataset.feat_dir); a video id names a file "
                "in that folder, not an absolute path or one with '..': rename the video"
            )
        return path


def load_array(path: Path, video_id: str, key: str | None = None) -> np.ndarray:
    """Raw array of one video from one file (no checks beyond readability; the format is
    the file's suffix, in any case)."""
    if not path.is_file():
        raise FeatureError(f"{path}: feature file of video {video_id!r} not found")
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if NPZ_KEY not in data:
                    raise FeatureError(
                        f"{path}: video {video_id!r}: no field {NPZ_KEY!r} "
                        f"(file has {sorted(data.files)})"
                    )
                return data[NPZ_KEY]
        if ext == ".pt":
            value = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(value, dict) and NPZ_KEY in value:
                value = value[NPZ_KEY]
            if not isinstance(value, torch.Tensor):
                raise FeatureError(
                    f"{path}: video {video_id!r}: expected a tensor, got {type(value).__name__}"
                )
            return value.float().numpy()
        if ext in HDF5_EXTS:
            with h5py.File(path, "r") as h5:
                name = key if key is not None else video_id
                if name not in h5:
                    raise FeatureError(f"{path}: no dataset {name!r} for video {video_id!r}")
                return h5[name][()]
    except FeatureError:
        raise
    except Exception as err:
        raise FeatureError(
            f"{path}: cannot read features of video {video_id!r} ({type(err).__name__}: {err})"
        ) from err
    raise FeatureError(f"{path}: video {video_id!r}: unsupported feature extension {ext!r}")


def hdf5_members(path: Path) -> tuple[list[str], list[str]]:
    """Top-level member names of an HDF5 feature file: ``(datasets, others)``, each sorted.

    ``datasets`` are the candidate per-video arrays; ``others`` (groups, links to nothing)
    are not read as features.
    """
    try:
        with h5py.File(path, "r") as h5:
            names = sorted(h5.keys())
            kinds = {n: isinstance(h5.get(n), h5py.Dataset) for n in names}
    except Exception as err:
        raise FeatureError(
            f"{path}: cannot read HDF5 feature file ({type(err).__name__}: {err})"
        ) from err
    return [n for n in names if kinds[n]], [n for n in names if not kinds[n]]


def check_features(array: np.ndarray, input_dim: int, path: Path, video_id: str) -> np.ndarray:
    """``(T, D)`` float32 array validated for shape and finiteness."""
    if array.ndim != 2:
        raise FeatureError(
            f"{path}: video {video_id!r}: features must be 2-D (T, D), got shape {array.shape}"
        )
    if array.shape[1] != input_dim:
        raise FeatureError(
            f"{path}: video {video_id!r}: wrong feature width: expected input_dim "
            f"{input_dim}, got {array.shape[1]} (shape {array.shape})"
        )
    if array.shape[0] == 0:
        raise FeatureError(f"{path}: video {video_id!r}: no feature steps (shape {array.shape})")
    array = np.asarray(array, dtype=np.float32)
    # a float64 sum of float32 values cannot overflow: it is finite iff every value is
    if not np.isfinite(array.sum(dtype=np.float64)):
        bad = int((~np.isfinite(array)).any(axis=1).argmax())
        raise FeatureError(f"{path}: video {video_id!r}: NaN/Inf features (first at step {bad})")
    return array


class FeatureReader:
    """Reads one video's features from every stream.

    Args:
        streams: the feature folders, in concatenation order.
    """

    def __init__(self, streams: list[FeatureStream]) -> None:
        if not streams:
            raise ValueError("FeatureReader needs at least one feature stream")
        self.streams = list(streams)

    @property
    def input_dim(self) -> int:
        return sum(s.input_dim for s in self.streams)

    def read_stream(self, stream: FeatureStream, video_id: str, subset: str) -> torch.Tensor:
        """``(D_s, T_s)`` float32 features of one stream: a transposed view of the file's
        time-major array (not contiguous; cropping before the copy saves work)."""
        path = stream.path_of(video_id, subset)
        key = f"{stream.prefix}{video_id}" if stream.is_hdf5 else None
        array = check_features(load_array(path, video_id, key), stream.input_dim, path, video_id)
        return torch.from_numpy(np.require(array, requirements="C")).T

    def __call__(self, video_id: str, subset: str = "") -> torch.Tensor:
        """``(D, T)`` float32: streams resampled to the longest ``T`` and concatenated.

        A single stream comes back as a non-contiguous view (see :meth:`read_stream`)."""
        parts = [self.read_stream(s, video_id, subset) for s in self.streams]
        if len(parts) == 1:
            return parts[0]
        length = max(p.shape[1] for p in parts)
        return torch.cat([resample_features(p, length) for p in parts], dim=0)
