"""Fixtures that write tiny datasets in the real on-disk format (docs/data.md §2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.features import ramp_features, save_features, video_entry


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[..., Path]:
    """``write_json(database, name="annotations.json") -> path`` under ``tmp_path``."""

    def write(database: dict, name: str = "annotations.json") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": "test", "database": database}))
        return path

    return write


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Callable[..., Path]:
    """``tiny_dataset(database, lengths, dim=4, ext=".npy", feat_dir="features") -> root``.

    Features of video ``v`` are ``(lengths[v], dim)`` with value ``100 * step + channel``
    (plus the stream index * 0.5 when ``feat_dir`` is a list), so any slice or resampling
    can be predicted by formula.
    """

    def write(
        database: dict,
        lengths: dict[str, int],
        dim: int | list[int] = 4,
        ext: str = ".npy",
        feat_dir: str | list[str] = "features",
        prefix: str = "",
    ) -> Path:
        root = tmp_path / "dataset"
        root.mkdir(exist_ok=True)
        (root / "annotations.json").write_text(
            json.dumps({"version": "test", "database": database})
        )
        dirs = [feat_dir] if isinstance(feat_dir, str) else feat_dir
        dims = dim if isinstance(dim, list) else [dim] * len(dirs)
        for s, (folder, d) in enumerate(zip(dirs, dims, strict=True)):
            (root / folder).mkdir(exist_ok=True)
            for video_id, length in lengths.items():
                array = ramp_features(length, d) + 0.5 * s
                if ext in (".h5", ".hdf5"):
                    subset = database[video_id]["subset"].lower()
                    save_features(root / folder / f"{subset}{ext}", array, prefix + video_id)
                else:
                    save_features(root / folder / f"{prefix}{video_id}{ext}", array)
        return root

    return write


@pytest.fixture
def ramp() -> Callable[[int, int], np.ndarray]:
    return ramp_features


@pytest.fixture
def save() -> Callable[..., None]:
    return save_features


@pytest.fixture
def entry() -> Callable[..., dict]:
    return video_entry
