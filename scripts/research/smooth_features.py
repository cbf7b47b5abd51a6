"""Smooth every feature file of a folder along time with a Gaussian, for boundary studies.

Usage: ``python scripts/research/smooth_features.py SRC_DIR OUT_DIR --sigma 2``

Benchmarks stitched from trimmed clips (such as a dev set built from workout clips) change
features abruptly at every cut, so no frame is transitional. A real clip feature whose
window straddles an action boundary mixes both sides; a Gaussian of ``sigma`` steps
imitates that: step ``t`` becomes ``sum_k w_k x_{t+k}`` over ``|k| <= 3 sigma``,
``w_k ∝ exp(-k² / (2 sigma²))`` normalised to sum 1, the first and last step repeated
beyond the ends. Each ``SRC_DIR/<video>.npy`` (``T × D``) is written to ``OUT_DIR`` with
the same name, shape and dtype; annotations do not change (copy them yourself).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Weights ``w_{-r..r}``, ``r = ceil(3 sigma)``, summing to 1; shape ``(2r + 1,)``."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def smooth(features: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 of a ``T × D`` array, edges repeated; same shape."""
    if features.ndim != 2:
        raise ValueError(f"expected a T × D array, got shape {features.shape}")
    weights = gaussian_kernel(sigma)
    radius = len(weights) // 2
    padded = np.pad(features.astype(np.float64), ((radius, radius), (0, 0)), mode="edge")
    length = features.shape[0]
    out = sum(w * padded[k : k + length] for k, w in enumerate(weights))
    return out.astype(features.dtype)


def smooth_folder(src: Path, out: Path, sigma: float) -> int:
    """Smooth every ``src/*.npy`` into ``out``; returns the number of files written."""
    if out.resolve() == src.resolve():
        raise ValueError(f"{out} is the source folder: the smoothed files would replace it")
    files = sorted(src.glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"no .npy feature files in {src}")
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        features = np.load(path)
        try:
            smoothed = smooth(features, sigma)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        np.save(out / path.name, smoothed)
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="folder of <video>.npy features (T × D)")
    parser.add_argument("out", type=Path, help="folder to write the smoothed files to")
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian sd in steps")
    args = parser.parse_args()
    count = smooth_folder(args.src, args.out, args.sigma)
    print(f"smoothed {count} files from {args.src} into {args.out} (sigma {args.sigma} steps)")


if __name__ == "__main__":
    main()
