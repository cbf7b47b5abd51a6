"""Lightning DataModules: one reading the on-disk format for every benchmark, and the
synthetic benchmark's, which generates itself on first use.

The ``dataset`` config block, less its ``_target_`` (which names the class), is one settings
dataclass, :class:`DataConfig` (:meth:`TALDataModule.from_config`; ``conf/dataset/<name>.yaml``
holds a benchmark's values, ``conf/dataset_defaults.yaml`` the rest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from asl_tal.data import synthetic
from asl_tal.data.annotations import (
    AnnotationError,
    ClassMap,
    SegmentTolerance,
    VideoAnnotation,
    load_annotations,
    read_json,
)
from asl_tal.data.collate import ReadableBatches, collate, collate_readable
from asl_tal.data.dataset import SampleConfig, TALDataset
from asl_tal.data.feature_folder import SourceReader, VideoSource, unlabelled_videos
from asl_tal.data.features import FeatureReader, FeatureStream
from asl_tal.data.holdout import held_out_ids
from asl_tal.data.preflight import PreflightReport, check_feature_files
from asl_tal.data.sampling import EpochDataLoader, EpochShuffleSampler
from asl_tal.settings import (
    BELOW_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    UP_TO_ONE,
    settings_from,
)

log = logging.getLogger(__name__)

STAGES = {"train": "train", "val": "val", "validate": "val", "test": "test"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder, annotation file or feature folder is missing."""


@dataclass(frozen=True)
class DataConfig:
    """The ``dataset`` block of :class:`TALDataModule`: every key but ``_target_``.

    ``conf/dataset_defaults.yaml`` gives every key its generic value and documents it;
    paths are relative to ``root`` unless absolute. The keys named like
    :class:`SampleConfig`'s fields are how a video becomes a sample
    (:attr:`TALDataModule.sample_config`). ``feat_dir``, ``input_dim``,
    ``file_prefix``, ``file_ext`` and ``hdf5_file`` take one value or one per stream; a
    ``file_prefix`` of None (ActionFormer's ``file_prefix: ~``) means no prefix.
    ``class_agnostic: None`` means "when ``ext_score_file`` is set". ``preflight`` turns
    the feature pre-flight check of :meth:`TALDataModule.setup` on; ``length_mismatch:
    warn`` makes its length mismatches warnings. ``train_padding`` is how far training
    batches are padded: ``longest`` (the batch's longest crop) or ``max_seq_len``.
    ``val_holdout`` > 0 validates on that fraction of the training videos (by a hash of
    their ids, :func:`~asl_tal.data.holdout.held_out_ids`), which then do not train,
    instead of on ``val_subset``.
    """

    name: str
    how_to_get: str
    root: str
    json_file: str
    feat_dir: str | list[str]
    file_prefix: str | list[str | None] | None
    file_ext: str | list[str]
    hdf5_file: str | list[str | None] | None
    input_dim: Annotated[int | list[int], POSITIVE]
    num_classes: Annotated[int, POSITIVE]
    train_subset: list[str] | str
    val_subset: list[str] | str
    test_subset: list[str] | str
    batch_size: Annotated[int, POSITIVE]
    eval_batch_size: Annotated[int | None, POSITIVE]
    num_workers: Annotated[int, NON_NEGATIVE]
    pin_memory: bool
    persistent_workers: bool
    cache_features: bool
    seed: int
    ext_score_file: str | None
    class_agnostic: bool | None
    clip_tolerance: Annotated[float, NON_NEGATIVE]
    clip_tolerance_relative: Annotated[float, NON_NEGATIVE]
    preflight: bool
    length_mismatch: Literal["error", "warn"]
    train_padding: Literal["longest", "max_seq_len"]
    # 1.0 would hold out every training video
    val_holdout: Annotated[float, BELOW_ONE]
    fps: Annotated[float | None, POSITIVE]
    default_fps: Annotated[float | None, POSITIVE]
    feat_stride: Annotated[float | None, POSITIVE]
    feat_window: Annotated[float | None, POSITIVE]
    max_seq_len: Annotated[int | None, POSITIVE]
    fixed_length: Annotated[int | None, POSITIVE]
    crop_after_resample: bool
    resample_geometry: str
    crop_ratio: Annotated[tuple[float, float] | None, UP_TO_ONE]
    trunc_thresh: Annotated[float, FRACTION]


@dataclass(frozen=True)
class SyntheticDataConfig(DataConfig):
    """The ``dataset`` block of :class:`SyntheticDataModule`: :class:`DataConfig`'s keys and
    ``generator``, the generated benchmark's parameters."""

    generator: synthetic.SyntheticConfig


# dataset.* keys that go to SampleConfig (class_agnostic is resolved by the DataModule)
SAMPLE_KEYS = tuple(f.name for f in fields(SampleConfig) if f.name != "class_agnostic")

# the stages whose subsets setup(stage) uses and checks before any training
SETUP_STAGES = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    None: ("train", "val", "test"),
}
# the subsets the feature pre-flight check covers: fit also checks the test subset, which
# the training run tests at its end (a bad test file is found before training starts)
PREFLIGHT_STAGES = {**SETUP_STAGES, "fit": ("train", "val", "test")}


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

    One class serves every benchmark: ``conf/dataset/<name>.yaml`` says where its files are
    and how to read them. Public: :attr:`class_map`, :attr:`train_class_counts`,
    :attr:`num_model_classes`, :attr:`sample_config`, :meth:`annotations`,
    :meth:`video_index`, :meth:`dataset`, :meth:`video_scores`, :meth:`preflight`, the
    train / val / test dataloaders and :meth:`unlabelled_loader` (feature files without
    annotations). Annotations load lazily on first use, so the model can
    be built from ``class_map`` / ``train_class_counts`` before ``trainer.fit`` calls
    :meth:`setup`, which checks every feature file of the run first (:meth:`preflight`).

    Args:
        cfg: the ``dataset`` block (:meth:`from_config` builds it from the config).
        pad_multiple: batches are padded to a multiple of this (the network's
            ``required_multiple``).
    """

    # the settings of the ``dataset`` block that names this class as its ``_target_``
    settings_class: ClassVar[type[DataConfig]] = DataConfig

    def __init__(self, cfg: DataConfig, pad_multiple: int) -> None:
        super().__init__()
        self.cfg = cfg
        sample = {key: getattr(cfg, key) for key in SAMPLE_KEYS}
        self.sample_config = SampleConfig(**sample, class_agnostic=self.class_agnostic)
        self.pad_multiple = pad_multiple
        self._subset_cache: dict[tuple[str, bool], dict[str, VideoAnnotation]] = {}
        self._datasets: dict[str, TALDataset] = {}
        self._preflight_checked: set[str] = set()
        self.preflight_report: PreflightReport | None = None

    @classmethod
    def from_config(cls, block: Mapping[str, Any], pad_multiple: int) -> TALDataModule:
        """The data module of the ``dataset`` block (less ``_target_``), checked first: a
        key that is missing, unknown, of the wrong type or out of range is one
        :class:`~asl_tal.settings.ConfigValueError` line naming it."""
        return cls(settings_from(cls.settings_class, block, "dataset"), pad_multiple)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def how_to_get(self) -> str:
        return self.cfg.how_to_get

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
            FeatureStream(self.resolve(d), int(dim), prefix or "", str(ext), h)
            for d, dim, prefix, ext, h in zip(dirs, dims, prefixes, exts, h5, strict=True)
        ]

    def ensure_available(self) -> None:
        """Hook for datasets that can create themselves (the synthetic benchmark)."""

    def check_paths(self) -> None:
        """Raise one :class:`DatasetNotFoundError` listing everything missing."""
        missing = []
        if not self.root.is_dir():
            missing.append(f"dataset folder {self.root} (dataset.root)")
        if not self.json_path.is_file():
            missing.append(f"annotation file {self.json_path} (dataset.json_file)")
        for stream in self.streams:
            if not stream.feat_dir.is_dir():
                missing.append(f"feature folder {stream.feat_dir} (dataset.feat_dir)")
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
        return [str(s) for s in _as_list(getattr(self.cfg, f"{key}_subset"))]

    def _load_subset(self, stage: str, clip: bool) -> dict[str, VideoAnnotation]:
        key = STAGES.get(stage)
        if not self.cfg.val_holdout or key not in ("train", "val"):
            return self._load_subsets(tuple(self.subsets(stage)), clip)
        videos = self._load_subsets(tuple(self.subsets("train")), clip)
        held_out = held_out_ids(videos, self.cfg.val_holdout, str(self.json_path))
        return {vid: v for vid, v in videos.items() if (vid in held_out) == (key == "val")}

    def _load_subsets(self, subsets: tuple[str, ...], clip: bool) -> dict[str, VideoAnnotation]:
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
            self._check_fps(videos)
            self._subset_cache[key] = videos
        return self._subset_cache[key]

    def _check_fps(self, videos: dict[str, VideoAnnotation]) -> None:
        """Raise :class:`AnnotationError` when a video has no frame rate and needs one."""
        s = self.sample_config
        if s.feat_stride is None or s.fps is not None or s.default_fps is not None:
            return
        missing = [video_id for video_id, video in videos.items() if video.fps is None]
        if missing:
            others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise AnnotationError(
                f"{self.json_path}: video {missing[0]!r}{others} has no field 'fps', and "
                f"dataset.feat_stride={s.feat_stride:g} counts frames: give the frame rate as "
                "'fps' of each video in that file, as dataset.fps=<fps> for every video, or "
                "as dataset.default_fps=<fps> for the videos without one"
            )

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
            if key == "val" and self.cfg.val_holdout:
                log.info(
                    "validating on %d held-out training videos (dataset.val_holdout=%g), "
                    "not on dataset.val_subset",
                    len(self._datasets[key].videos),
                    self.cfg.val_holdout,
                )
        return self._datasets[key]

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's datasets, after :meth:`check_ground_truth` of its evaluated
        subsets and :meth:`preflight` of every subset it uses."""
        if stage not in SETUP_STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(SETUP_STAGES)}")
        for name in SETUP_STAGES[stage]:
            self.dataset(name)  # reads the annotations, not the features
            if name != "train":
                self.check_ground_truth(name)
        self.preflight(PREFLIGHT_STAGES[stage])

    def check_ground_truth(self, stage: str) -> None:
        """Raise :class:`AnnotationError` when no video of the ``val`` / ``test`` subset has
        an annotated segment: its mAP would be undefined (found before any training)."""
        videos = self.annotations(stage)
        if any(len(video.labels) for video in videos.values()):
            return
        key = STAGES[stage]
        if key == "val" and self.cfg.val_holdout:
            source = (
                f"the {len(videos)} training video(s) held out by "
                f"dataset.val_holdout={self.cfg.val_holdout:g}"
            )
            fix = "raise dataset.val_holdout, or validate on dataset.val_subset=[<subset>]"
        else:
            source = f"{len(videos)} video(s) of dataset.{key}_subset={self.subsets(stage)}"
            fix = f"pass dataset.{key}_subset=[<subset with annotations>]"
            if key == "val":
                fix += " or dataset.val_holdout=<fraction of the training videos>"
        raise AnnotationError(
            f"{self.json_path}: none of the {source} has an annotated segment, so the "
            f"{'validation' if key == 'val' else 'test'} mAP is undefined: {fix}"
        )

    def preflight(self, stages: Sequence[str] = ("train", "val", "test")) -> None:
        """Check every feature file the datasets of ``stages`` read, from the files' headers
        (:func:`~asl_tal.data.preflight.check_feature_files`), once per stage per run.

        Off with ``dataset.preflight: false``; ``dataset.length_mismatch: warn`` logs a
        length mismatch instead of raising it. The report of the last check is kept in
        :attr:`preflight_report`.

        Raises:
            PreflightError: one message listing every problem found (file, video, numbers).
        """
        stages = [STAGES[s] for s in stages if STAGES[s] not in self._preflight_checked]
        if not self.cfg.preflight or not stages:
            return
        videos = [video for stage in stages for video in self.dataset(stage).videos]
        self.preflight_report = check_feature_files(
            videos,
            self.streams,
            self.sample_config,
            lengths_as_warnings=self.cfg.length_mismatch == "warn",
        )
        self._preflight_checked.update(stages)

    def _collate(self, train: bool) -> partial:
        """The collate function of training or evaluation batches."""
        return partial(
            collate,
            pad_multiple=self.pad_multiple,
            max_seq_len=self.sample_config.max_seq_len,
            train=train,
            train_padding=self.cfg.train_padding,
        )

    def _loader(self, dataset: TALDataset, collate_fn: Callable | None = None) -> DataLoader:
        """``dataset`` in batches of ``batch_size`` (training, shuffled) or of
        ``eval_batch_size`` (else ``batch_size``), collated by ``collate_fn`` (default: the
        dataset's mode's :func:`collate`)."""
        train = dataset.train
        c = self.cfg
        batch_size = c.batch_size if train else (c.eval_batch_size or c.batch_size)
        return EpochDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochShuffleSampler(len(dataset), c.seed) if train else None,
            drop_last=train and len(dataset) > batch_size,
            num_workers=c.num_workers,
            pin_memory=c.pin_memory,
            persistent_workers=c.persistent_workers and c.num_workers > 0,
            collate_fn=collate_fn or self._collate(train),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train"))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"))

    def unlabelled_loader(
        self,
        sources: Sequence[VideoSource],
        fps: float | None = None,
        duration: float | None = None,
    ) -> ReadableBatches:
        """Videos given as feature files alone (:func:`~asl_tal.data.feature_folder.find_videos`),
        read, resampled and batched as the test subset is (``eval_batch_size``, the same
        collate), with the unreadable ones set aside in the result's ``skipped``.

        Args:
            sources: the videos, one per video id, of a single-stream dataset.
            fps: frame rate of every video, in place of ``dataset.fps`` (None: ``dataset.fps``,
                else ``dataset.default_fps``).
            duration: seconds, for every video (None: derived from its number of features).

        Raises:
            ValueError: the dataset has several feature streams.
        """
        if len(self.streams) > 1:
            raise ValueError(
                f"dataset {self.name!r}: feature files without annotations are read as one "
                f"stream; this dataset has {len(self.streams)}"
            )
        config = self.sample_config if fps is None else replace(self.sample_config, fps=fps)
        dataset = TALDataset(
            unlabelled_videos(sources, duration),
            SourceReader(sources, self.streams[0].input_dim),
            config,
            train=False,
        )
        collate_fn = partial(collate_readable, collate_fn=self._collate(train=False))
        return ReadableBatches(self._loader(dataset, collate_fn))

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


class SyntheticDataModule(TALDataModule):
    """The generated benchmark (``docs/data.md`` §6), created on first use.

    The generated data depend on ``dataset.generator`` only (its own ``seed``), not on
    ``dataset.seed``, so runs with different training seeds share one cached dataset.
    """

    settings_class: ClassVar[type[DataConfig]] = SyntheticDataConfig
    cfg: SyntheticDataConfig

    def ensure_available(self) -> None:
        synthetic.ensure_synthetic(self.root, self.cfg.generator, force=False)
