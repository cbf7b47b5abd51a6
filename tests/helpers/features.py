"""Feature files and annotation entries in the on-disk formats the readers take
(docs/data.md §2), for tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch


def save_features(path: Path, array: np.ndarray, key: str | None = None) -> None:
    """Write one ``(T, D)`` array in the format given by ``path``'s extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".npz":
        np.savez(path, feats=array)
    elif path.suffix == ".pt":
        torch.save(torch.from_numpy(array), path)
    elif path.suffix in (".h5", ".hdf5"):
        with h5py.File(path, "a") as h5:
            h5.create_dataset(key, data=array)
    else:
        raise ValueError(path.suffix)


def ramp_features(length: int, dim: int) -> np.ndarray:
    """``(length, dim)`` float32 with value ``100 * step + channel``."""
    steps = np.arange(length, dtype=np.float32)[:, None]
    return 100.0 * steps + np.arange(dim, dtype=np.float32)[None, :]


def video_entry(
    subset: str, duration: float, anns: list[tuple[str, float, float]], fps: float | None = 10.0
) -> dict:
    """One ``database`` entry with annotations ``(label, start, end)`` in seconds."""
    entry = {
        "subset": subset,
        "duration": duration,
        "annotations": [{"label": lab, "segment": [s, e]} for lab, s, e in anns],
    }
    if fps is not None:
        entry["fps"] = fps
    return entry
