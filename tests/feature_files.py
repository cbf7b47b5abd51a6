"""Writing feature files in every format the readers take, for tests."""

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
