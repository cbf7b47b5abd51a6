"""Detect actions in raw features: ``python -m asl_tal.predict ckpt_path=... input=PATH``.

``input`` is one feature file or a folder of them (``.npy`` / ``.npz`` / ``.pt``, ``(T, D)``,
one per video, named ``<video_id><ext>``). No annotation is needed: each video's duration is
``((T − 1)·stride + window) / fps`` from the dataset config (DATASETS.md §2) unless
``duration`` is given. Writes an ActivityNet results JSON with class names as labels.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from asl_tal.app import UserInputError, build_trainer, load_checkpoint, run_dir, user_errors
from asl_tal.data.annotations import ClassMap
from asl_tal.data.batch import VideoMeta
from asl_tal.data.collate import collate
from asl_tal.data.dataset import VideoSample
from asl_tal.data.features import FeatureError, check_features, load_array
from asl_tal.data.transforms import resample_features, resample_meta
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.submission import write_activitynet_results

log = logging.getLogger("asl_tal.predict")

FEATURE_EXTS = (".npy", ".npz", ".pt")


def feature_files(path: str | Path) -> list[Path]:
    """The feature files named by ``path`` (a file, or a folder's files sorted by name)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {path}: no such feature file or folder")
    files = sorted(p for p in path.iterdir() if p.suffix in FEATURE_EXTS)
    if not files:
        raise FeatureError(f"input {path}: no feature files ({', '.join(FEATURE_EXTS)})")
    return files


class RawFeatureDataset(Dataset):
    """Un-annotated videos, one feature file each, as evaluation samples.

    Args:
        files: feature files; the video id is the file name without extension.
        input_dim: expected feature width ``D``.
        fps, stride, window: grid geometry (``stride=None``: features per second, which
            needs ``duration``).
        duration: seconds, for every video (None = derived from ``T``).
        fixed_length: resample to this many steps (None = keep ``T``).
        resample_geometry: grid geometry after resampling (``resample_meta``).
    """

    def __init__(
        self,
        files: list[Path],
        input_dim: int,
        fps: float | None,
        stride: float | None,
        window: float | None,
        duration: float | None = None,
        fixed_length: int | None = None,
        resample_geometry: str = "spec",
    ) -> None:
        if stride is None and duration is None:
            raise UserInputError(
                "this dataset measures features per second (dataset.feat_stride=null): "
                "give the video duration with duration=SECONDS"
            )
        if stride is not None and fps is None:
            raise UserInputError(
                "no frame rate: set fps=... (or dataset.fps / dataset.default_fps)"
            )
        self.files = files
        self.input_dim = input_dim
        self.fps, self.stride, self.duration = fps, stride, duration
        self.window = window if window is not None else stride
        self.fixed_length = fixed_length
        self.resample_geometry = resample_geometry

    def __len__(self) -> int:
        return len(self.files)

    def meta(self, video_id: str, num_feats: int) -> VideoMeta:
        """Grid geometry of a video with ``num_feats`` steps."""
        if self.stride is None:
            fps, stride, window = num_feats / self.duration, 1.0, 1.0
        else:
            fps, stride, window = float(self.fps), float(self.stride), float(self.window)
        duration = self.duration or ((num_feats - 1) * stride + window) / fps
        return VideoMeta(video_id, duration, fps, stride, window, 0.0, num_feats)

    def __getitem__(self, index: int) -> VideoSample:
        path = self.files[index]
        video_id = path.stem
        array = check_features(load_array(path, video_id), self.input_dim, path, video_id)
        feats = torch.from_numpy(np.ascontiguousarray(array.T))
        meta = self.meta(video_id, feats.shape[1])
        if self.fixed_length is not None:
            meta = resample_meta(meta, feats.shape[1], self.fixed_length, self.resample_geometry)
            feats = resample_features(feats, self.fixed_length)
        empty = torch.zeros(0, 2)
        return VideoSample(feats.contiguous(), empty, torch.zeros(0, dtype=torch.long), meta)


def predict(cfg: DictConfig) -> Path:
    """Run ``cfg.ckpt_path`` on ``cfg.input``; returns the written detections file."""
    data = cfg.dataset
    if OmegaConf.is_list(data.input_dim):
        raise UserInputError(
            "predict reads single-stream features; this dataset has several streams"
        )
    module = load_checkpoint(cfg.ckpt_path, input_dim=int(data.input_dim))
    if module.num_model_classes != len(module.class_names):
        raise UserInputError(
            f"{cfg.ckpt_path}: a class-agnostic checkpoint (ActivityNet's second variant) needs "
            "video-level class scores to name its detections; use python -m asl_tal.eval "
            "with dataset.ext_score_file instead"
        )
    module.postprocess_cfg = PostprocessConfig(**OmegaConf.to_container(cfg.postprocess))
    dataset = RawFeatureDataset(
        feature_files(cfg.input),
        input_dim=int(data.input_dim),
        fps=cfg.get("fps") or data.get("fps") or data.get("default_fps"),
        stride=data.feat_stride,
        window=data.feat_window,
        duration=cfg.get("duration"),
        fixed_length=data.fixed_length,
        resample_geometry=data.get("resample_geometry", "spec"),
    )
    loader = DataLoader(
        dataset,
        batch_size=1,
        collate_fn=partial(
            collate,
            pad_multiple=module.detector.required_multiple,
            max_seq_len=data.max_seq_len,
            train=False,
        ),
    )
    trainer = build_trainer(cfg, callbacks=False)
    batches = trainer.predict(module, dataloaders=loader)
    detections = dict(item for batch in batches for item in batch)
    output = Path(cfg.output) if cfg.get("output") else run_dir() / "results" / "predictions.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    write_activitynet_results(output, detections, ClassMap(tuple(module.class_names)))
    log.info("%d videos, detections written to %s", len(detections), output)
    return output


@hydra.main(version_base="1.3", config_path="../../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors():
        predict(cfg)


if __name__ == "__main__":
    main()
