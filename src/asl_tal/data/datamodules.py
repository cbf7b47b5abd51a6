"""Lightning DataModules: one base reading the on-disk format, one thin subclass per benchmark.

Every constructor keyword comes straight from the Hydra ``dataset`` config
(``conf/dataset/*.yaml`` holds each benchmark's values); a subclass only names its benchmark
and says how to obtain the data (``how_to_get``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property, partial
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from asl_tal.data.annotations import (
    AnnotationError,
    ClassMap,
    SegmentTolerance,
    VideoAnnotation,
    load_annotations,
    read_json,
)
from asl_tal.data.collate import collate
from asl_tal.data.dataset import SampleConfig, TALDataset
from asl_tal.data.features import FeatureReader, FeatureStream
from asl_tal.data.sampling import EpochShuffleSampler

STAGES = {"train": "train", "val": "val", "validate": "val", "test": "test", "predict": "predict"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder, annotation file or feature folder is missing."""


@dataclass
class DataConfig:
    """Every ``dataset.*`` key the DataModules accept (see ``conf/dataset/``).

    Paths are relative to ``root`` unless absolute. ``feat_dir``, ``input_dim``,
    ``file_prefix``, ``file_ext`` and ``hdf5_file`` take one value or one per stream.
    ``feat_stride: None`` means features per second (``fps = T / duration``).
    ``class_agnostic: None`` means "when ``ext_score_file`` is set".
    """

    root: str = "data"
    json_file: str = "annotations.json"
    feat_dir: str | list[str] = "features"
    file_prefix: str | list[str] = ""
    file_ext: str | list[str] = ".npy"
    hdf5_file: str | list[str | None] | None = None
    input_dim: int | list[int] | None = None
    num_classes: int | None = None
    train_subset: list[str] | str = "training"
    val_subset: list[str] | str = "validation"
    test_subset: list[str] | str = "test"
    predict_subset: list[str] | str | None = None
    fps: float | None = None
    default_fps: float | None = None
    feat_stride: float | None = 1.0
    feat_window: float | None = None
    max_seq_len: int | None = None
    fixed_length: int | None = None
    crop_after_resample: bool = False
    resample_geometry: str = "spec"
    crop_ratio: list[float] | None = None
    trunc_thresh: float = 0.5
    batch_size: int = 2
    eval_batch_size: int | None = None
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    cache_features: bool = False
    pad_multiple: int = 1
    seed: int = 0
    ext_score_file: str | None = None
    class_agnostic: bool | None = None
    clip_tolerance: float = 1.0
    clip_tolerance_relative: float = 0.05


def _as_list(value: Any) -> list:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _per_stream(value: Any, num_streams: int, name: str) -> list:
    values = _as_list(value)
    if len(values) == 1:
        return values * num_streams
    if len(values) != num_streams:
        raise ValueError(f"dataset.{name} has {len(values)} entries for {num_streams} streams")
    return values


class TALDataModule(L.LightningDataModule):
    """Temporal action localization data in the ActionFormer-compatible layout.

    Public: :attr:`class_map`, :attr:`train_class_counts`, :attr:`num_model_classes`,
    :meth:`annotations`, :meth:`video_index`, :meth:`dataset`, :meth:`video_scores` and the
    four dataloaders. Annotations load lazily on first use, so the model can be built from
    ``class_map`` / ``train_class_counts`` before ``trainer.fit`` calls :meth:`setup`.
    ``pad_multiple`` may be set after construction (the app copies the network's
    ``required_multiple`` into it).
    """

    name: ClassVar[str] = "custom"
    how_to_get: ClassVar[str] = (
        "write the annotation JSON and feature files in the layout of DATASETS.md §2"
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.cfg = DataConfig(**kwargs)
        self.pad_multiple = int(self.cfg.pad_multiple)
        self._subset_cache: dict[tuple[str, bool], dict[str, VideoAnnotation]] = {}
        self._datasets: dict[str, TALDataset] = {}

    @property
    def root(self) -> Path:
        return Path(self.cfg.root).expanduser()

    def resolve(self, path: str) -> Path:
        """``path`` relative to the dataset root unless absolute."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def json_path(self) -> Path:
        return self.resolve(self.cfg.json_file)

    @cached_property
    def streams(self) -> list[FeatureStream]:
        dirs = _as_list(self.cfg.feat_dir)
        n = len(dirs)
        if self.cfg.input_dim is None:
            raise ValueError(f"dataset {self.name!r}: dataset.input_dim is required")
        dims = _per_stream(self.cfg.input_dim, n, "input_dim")
        prefixes = _per_stream(self.cfg.file_prefix, n, "file_prefix")
        exts = _per_stream(self.cfg.file_ext, n, "file_ext")
        h5 = _per_stream(self.cfg.hdf5_file, n, "hdf5_file")
        return [
            FeatureStream(self.resolve(d), int(dim), str(prefix), str(ext), h)
            for d, dim, prefix, ext, h in zip(dirs, dims, prefixes, exts, h5, strict=True)
        ]

    def ensure_available(self) -> None:
        """Hook for datasets that can create themselves (the synthetic benchmark)."""

    def check_paths(self) -> None:
        """Raise one :class:`DatasetNotFoundError` listing everything missing."""
        missing = []
        if not self.root.is_dir():
            missing.append(f"dataset folder {self.root}")
        if not self.json_path.is_file():
            missing.append(f"annotation file {self.json_path}")
        for stream in self.streams:
            if not stream.feat_dir.is_dir():
                missing.append(f"feature folder {stream.feat_dir}")
            elif stream.hdf5_file and not (stream.feat_dir / stream.hdf5_file).is_file():
                missing.append(f"HDF5 feature file {stream.feat_dir / stream.hdf5_file}")
        if self.cfg.ext_score_file and not self.resolve(self.cfg.ext_score_file).is_file():
            missing.append(f"external score file {self.resolve(self.cfg.ext_score_file)}")
        if missing:
            raise DatasetNotFoundError(
                f"dataset {self.name!r} not found: missing " + "; ".join(missing) + ". "
                f"Expected under dataset.root={self.root}. To get it: {self.how_to_get}. "
                "Set dataset.root (or the paths above) to where it lives."
            )

    def prepare_data(self) -> None:
        self.ensure_available()

    @cached_property
    def class_map(self) -> ClassMap:
        """Class names from the whole annotation file (checked against ``num_classes``)."""
        self.ensure_available()
        self.check_paths()
        _, class_map = load_annotations(self.json_path, subsets=None)
        expected = self.cfg.num_classes
        if expected is not None and expected != self.num_classes_for(class_map):
            raise AnnotationError(
                f"{self.json_path}: dataset.num_classes is {expected} but the annotation "
                f"file has {class_map.num_classes} classes"
                + (" (class-agnostic mode needs num_classes 1)" if self.class_agnostic else "")
            )
        return class_map

    @property
    def class_agnostic(self) -> bool:
        if self.cfg.class_agnostic is None:
            return self.cfg.ext_score_file is not None
        return bool(self.cfg.class_agnostic)

    def num_classes_for(self, class_map: ClassMap) -> int:
        return 1 if self.class_agnostic else class_map.num_classes

    @property
    def num_model_classes(self) -> int:
        """Classes the network predicts (1 in class-agnostic mode)."""
        return self.num_classes_for(self.class_map)

    def subsets(self, stage: str) -> list[str]:
        key = STAGES.get(stage)
        if key is None:
            raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGES)}")
        if key == "predict" and self.cfg.predict_subset is None:
            key = "test"
        return [str(s) for s in _as_list(getattr(self.cfg, f"{key}_subset"))]

    def _load_subset(self, stage: str, clip: bool) -> dict[str, VideoAnnotation]:
        subsets = tuple(self.subsets(stage))
        key = (",".join(subsets), clip)
        if key not in self._subset_cache:
            videos, _ = load_annotations(
                self.json_path,
                list(subsets),
                self.class_map,
                clip_to_duration=clip,
                tolerance=SegmentTolerance(
                    self.cfg.clip_tolerance, self.cfg.clip_tolerance_relative
                ),
            )
            self._subset_cache[key] = videos
        return self._subset_cache[key]

    def annotations(self, stage: str) -> dict[str, VideoAnnotation]:
        """The stage's GT in seconds, as the file gives it (unclipped), for the metric."""
        return self._load_subset(stage, clip=False)

    def video_index(self, stage: str) -> dict[str, int]:
        """Video id -> index in :meth:`annotations` order (the metric's integer ids)."""
        return {video_id: i for i, video_id in enumerate(self.annotations(stage))}

    @cached_property
    def train_class_counts(self) -> np.ndarray:
        """``(C,)`` int64 instance counts in the training subset (C = model classes)."""
        videos = self._load_subset("train", clip=True).values()
        labels = np.concatenate([v.labels for v in videos] + [np.zeros(0, np.int64)])
        if self.class_agnostic:
            return np.array([labels.size], dtype=np.int64)
        return np.bincount(labels, minlength=self.class_map.num_classes).astype(np.int64)

    @property
    def sample_config(self) -> SampleConfig:
        """The :class:`SampleConfig` keys of ``dataset.*``, taken by name from the config."""
        c = self.cfg
        derived = {
            "crop_ratio": None if c.crop_ratio is None else tuple(float(r) for r in c.crop_ratio),
            "class_agnostic": self.class_agnostic,  # None in the config means "auto"
        }
        same = {f.name: getattr(c, f.name) for f in fields(SampleConfig) if f.name not in derived}
        return SampleConfig(**same, **derived)

    def dataset(self, stage: str) -> TALDataset:
        """The stage's :class:`TALDataset` (training mode for ``"train"`` only)."""
        key = STAGES.get(stage, stage)
        if key not in self._datasets:
            self._datasets[key] = TALDataset(
                self._load_subset(stage, clip=True),
                FeatureReader(self.streams),
                self.sample_config,
                train=key == "train",
                cache_features=self.cfg.cache_features,
                seed=self.cfg.seed,
            )
        return self._datasets[key]

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ["train", "val"],
            "validate": ["val"],
            "test": ["test"],
            "predict": ["predict"],
            None: ["train", "val", "test"],
        }[stage]
        for name in wanted:
            self.dataset(name)

    def _loader(self, stage: str) -> DataLoader:
        train = stage == "train"
        dataset = self.dataset(stage)
        c = self.cfg
        batch_size = c.batch_size if train else (c.eval_batch_size or c.batch_size)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochShuffleSampler(len(dataset), c.seed) if train else None,
            drop_last=train and len(dataset) > batch_size,
            num_workers=c.num_workers,
            pin_memory=c.pin_memory,
            persistent_workers=c.persistent_workers and c.num_workers > 0,
            collate_fn=partial(
                collate, pad_multiple=self.pad_multiple, max_seq_len=c.max_seq_len, train=train
            ),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    @cached_property
    def _video_score_table(self) -> tuple[dict[str, list], np.ndarray]:
        if not self.cfg.ext_score_file:
            raise ValueError(f"dataset {self.name!r}: dataset.ext_score_file is not set")
        path = self.resolve(self.cfg.ext_score_file)
        data = read_json(path)
        if not isinstance(data, dict) or "class" not in data or "results" not in data:
            raise AnnotationError(f"{path}: expected fields 'class' and 'results'")
        names = [str(n) for n in data["class"]]
        missing = [n for n in self.class_map.names if n not in names]
        if missing:
            raise AnnotationError(f"{path}: field 'class' lacks classes {missing[:5]}")
        order = np.array([names.index(n) for n in self.class_map.names], dtype=np.int64)
        return data["results"], order

    def video_scores(self, video_id: str) -> np.ndarray:
        """``(C,)`` float32 external class scores of a video, in class-map order.

        The score file is ``{"class": [names], "results": {video_id: [probs]}}``; a video id
        is looked up as is, then with a ``v_`` prefix (ActivityNet's YouTube ids).
        """
        results, order = self._video_score_table
        probs = results.get(video_id, results.get(f"v_{video_id}"))
        path = self.resolve(self.cfg.ext_score_file)
        if probs is None:
            raise AnnotationError(f"{path}: no entry in 'results' for video {video_id!r}")
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim != 1 or probs.size <= int(order.max()):
            raise AnnotationError(
                f"{path}: video {video_id!r}: 'results' entry has shape {probs.shape}"
            )
        return probs[order]


class CustomDataModule(TALDataModule):
    """Any dataset in the on-disk format; everything comes from the config."""

    name = "custom"


class Thumos14DataModule(TALDataModule):
    """THUMOS14 with ActionFormer's I3D features (train on ``validation``, test on ``test``)."""

    name = "thumos14"
    how_to_get = "ActionFormer's THUMOS14 data folder (annotations/ + i3d_features/) drops in as-is"


class ActivityNetDataModule(TALDataModule):
    """ActivityNet 1.3 (I3D by default; TSP through the config), resampled to 192 steps."""

    name = "activitynet"
    how_to_get = (
        "ActionFormer's ActivityNet 1.3 data folder (annotations/ + i3d_features/ or "
        "tsp_features/) drops in as-is"
    )


class EpicKitchensDataModule(TALDataModule):
    """EPIC-Kitchens-100 verbs or nouns (pick the task through ``json_file``)."""

    name = "epic_kitchens"
    how_to_get = (
        "convert the EPIC_100_*.csv annotations with scripts/convert_epic.py; the SlowFast "
        "features are ActionFormer's (.npz, key 'feats')"
    )


class Ego4DMQDataModule(TALDataModule):
    """Ego4D Moment Queries: EgoVLP + SlowFast + Omnivore streams, concatenated."""

    name = "ego4d_mq"
    how_to_get = (
        "convert moments_{train,val}.json with scripts/convert_ego4d.py; one feature folder "
        "per stream (EgoVLP, SlowFast, Omnivore), one file per clip"
    )


class MultiThumosDataModule(TALDataModule):
    """MultiTHUMOS (multi-label), I3D RGB, features per second, resampled to 1024."""

    name = "multithumos"
    how_to_get = "convert the per-class annotation files with scripts/convert_multithumos.py"


class CharadesDataModule(TALDataModule):
    """Charades (multi-label), I3D RGB, features per second, resampled to 512."""

    name = "charades"
    how_to_get = "convert Charades_v1_{train,test}.csv with scripts/convert_charades.py"


class SyntheticDataModule(TALDataModule):
    """The generated benchmark (``DATASETS.md`` §5), created on first use.

    The generated data depend on ``generator`` only (its ``seed`` defaults to 0), not on
    ``dataset.seed``, so runs with different training seeds share one cached dataset.

    Args:
        generator: keyword arguments of ``asl_tal.data.synthetic.ensure_synthetic``.
        **kwargs: :class:`DataConfig` keys.
    """

    name = "synthetic"
    how_to_get = "it is generated by asl_tal.data.synthetic.ensure_synthetic"

    def __init__(self, generator: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generator = dict(generator or {})

    def ensure_available(self) -> None:
        from asl_tal.data.synthetic import ensure_synthetic

        ensure_synthetic(self.root, **{"seed": 0, **self.generator})
