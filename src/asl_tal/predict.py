"""Detect actions in raw features: ``python -m asl_tal.predict ckpt_path=... input=PATH``.

``input`` is one feature file or a folder of them, ``(T, D)`` time-major: ``.npy``, ``.npz``
(key ``feats``) or ``.pt`` named ``<video_id><ext>``, one per video, or ``.h5`` / ``.hdf5``
holding one dataset per video id (suffixes in any case). No annotation is needed: each
video's duration is ``((T − 1)·stride + window) / fps`` from the dataset config
(docs/data.md §3) unless ``duration`` is given. Writes the detections with class names as
labels in ``output_format`` (:mod:`asl_tal.submission`): an ActivityNet results JSON
(default), an Ego4D Moment Queries submission (``ego4d``) or ActionFormer's
``eval_results.pkl`` (``actionformer``). ``plot=true`` also draws each video's top
detections as ``<plot_dir>/<video_id>.png``; a plot that cannot be written is a warning,
counted in the summary, and changes neither the results nor the exit status.

A file that cannot be read (or two files giving the same video id) does not stop the others:
every readable video gets its detections written, then a summary on stderr (and in the log)
names each skipped file and why, and the exit status is 2. Entries of the folder that are
not feature files are listed as ignored (exit status unchanged); FIFOs, sockets, devices and
broken links among them are never opened. ``fps`` and ``duration`` must be finite numbers
> 0. ``output`` overwrites only an earlier results file of one of these layouts, never an
input.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickletools
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from asl_tal import outputs
from asl_tal.app import (
    UserInputError,
    build_trainer,
    check_run_config,
    command_line_overrides,
    run_dir,
    user_errors,
    writing,
)
from asl_tal.checkpoints import (
    checkpoint_hparams,
    load_checkpoint,
    local_checkpoint_path,
    with_checkpoint_settings,
)
from asl_tal.conf import CONFIG_PATH
from asl_tal.data.annotations import ClassMap
from asl_tal.data.batch import Batch, VideoMeta
from asl_tal.data.collate import collate
from asl_tal.data.dataset import VideoSample
from asl_tal.data.features import (
    HDF5_EXTS,
    FeatureError,
    check_features,
    hdf5_members,
    load_array,
)
from asl_tal.data.transforms import resample_features, resample_meta
from asl_tal.submission import (
    ACTIONFORMER_KEYS,
    EGO4D_CHALLENGE,
    check_output_format,
    write_results,
)
from asl_tal.viz import check_plot_top_k, plot_detections, write_plots

log = logging.getLogger("asl_tal.predict")

FEATURE_EXTS = (".npy", ".npz", ".pt", *HDF5_EXTS)
# exit status when some input was skipped (the output holds the other videos)
SKIPPED_EXIT = 2
# the top-level fields and the entry fields of the results file predict writes
RESULTS_KEYS = {"version", "results", "external_data"}
EGO4D_KEYS = {"version", "challenge", "detect_results", "retrieve_results"}
ENTRY_KEYS = {"label", "score", "segment"}
# the first byte of every pickle of protocol 2 or later (the PROTO opcode)
PICKLE_PROTO = b"\x80"
# the file predict writes under <run dir>/results/ when `output` is not given
DEFAULT_OUTPUT_NAMES = {
    "activitynet": "predictions.json",
    "ego4d": "ego4d_submission.json",
    "actionformer": "eval_results.pkl",
}


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
    """The videos of an ``input`` and what was left out of it.

    Attributes:
        sources: the videos to run, sorted by file name.
        files: every feature file of the input (what ``output`` must never be).
        skipped: inputs that are errors (unreadable, ambiguous): exit status 2.
        ignored: folder entries that are not feature files (unsupported suffix, sub-folders,
            entries that are not regular files).
    """

    sources: list[VideoSource] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignored: list[Skipped] = field(default_factory=list)


def _reason(err: Exception, path: Path) -> str:
    """``err``'s message without the leading ``<path>: `` that feature errors carry."""
    message = str(err) if isinstance(err, FeatureError) else f"{type(err).__name__}: {err}"
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _is_feature_file(path: Path) -> bool:
    return path.suffix.lower() in FEATURE_EXTS


def find_videos(path: str | Path) -> Inventory:
    """The videos named by ``path``: one feature file, or a folder's files sorted by name.

    Raises (before any work) when ``path`` does not exist, is a file of an unsupported
    format or not a regular file, or is a folder without any feature file. Unreadable HDF5
    files and video ids given by two sources are recorded in ``skipped``; other folder
    entries in ``ignored``, among them FIFOs, sockets, devices and broken links, which are
    never opened.
    """
    path = Path(path)
    inv = Inventory()
    supported = ", ".join(FEATURE_EXTS)
    if path.is_file():
        if not _is_feature_file(path):
            raise FeatureError(
                f"input {path}: unsupported feature file suffix {path.suffix!r} (reads {supported})"
            )
        inv.files = [path]
    elif path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.is_dir():
                inv.ignored.append(Skipped(str(entry), "a folder (sub-folders are not read)"))
            elif not entry.is_file():
                inv.ignored.append(
                    Skipped(str(entry), f"{outputs.not_regular(entry)}; never opened")
                )
            elif _is_feature_file(entry):
                inv.files.append(entry)
            else:
                inv.ignored.append(
                    Skipped(str(entry), f"unsupported suffix {entry.suffix!r} (reads {supported})")
                )
        if not inv.files:
            raise FeatureError(f"input {path}: no feature files ({supported})")
    elif path.exists():
        raise FeatureError(
            f"input {path}: {outputs.not_regular(path)}; give a feature file or a folder of them"
        )
    else:
        raise FileNotFoundError(f"input {path}: no such feature file or folder")

    sources: list[VideoSource] = []
    for file in inv.files:
        if file.suffix.lower() not in HDF5_EXTS:
            sources.append(VideoSource(file.stem, file))
            continue
        try:
            datasets, others = hdf5_members(file)
        except FeatureError as err:
            inv.skipped.append(Skipped(str(file), _reason(err, file)))
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


def _read_json_object(path: Path) -> object:
    """The JSON value of ``path`` if it is a JSON object file, else None (never raises)."""
    try:
        with path.open("rb") as f:
            if not f.read(4096).lstrip().startswith(b"{"):
                return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _all_entry_lists(results: object) -> bool:
    """``results`` maps videos to lists of ``{"label", "score", "segment"}`` objects."""
    return isinstance(results, dict) and all(
        isinstance(entries, list)
        and all(isinstance(e, dict) and set(e) == ENTRY_KEYS for e in entries)
        for entries in results.values()
    )


def is_predict_results(path: Path) -> bool:
    """True when ``path`` holds a results file in the layout predict writes
    (``{"version", "results": {video: [{"label", "score", "segment"}]}, "external_data"}``)."""
    data = _read_json_object(path)
    if not isinstance(data, dict) or set(data) != RESULTS_KEYS:
        return False
    if not (isinstance(data["version"], str) and data["external_data"] == {}):
        return False
    return _all_entry_lists(data["results"])


def is_ego4d_submission(path: Path) -> bool:
    """True when ``path`` holds an Ego4D Moment Queries submission in the layout predict
    writes (``version``, ``challenge``, ``detect_results``, ``retrieve_results``)."""
    data = _read_json_object(path)
    if not isinstance(data, dict) or set(data) != EGO4D_KEYS:
        return False
    if data["challenge"] != EGO4D_CHALLENGE:
        return False
    return _all_entry_lists(data["detect_results"]) and _all_entry_lists(data["retrieve_results"])


def is_actionformer_results(path: Path) -> bool:
    """True when ``path`` is a pickle naming ActionFormer's five result keys.

    The pickle is parsed (``pickletools.genops``), never loaded: nothing in it runs.
    """
    try:
        with path.open("rb") as f:
            if f.read(1) != PICKLE_PROTO:
                return False
            f.seek(0)
            strings = {arg for op, arg, _ in pickletools.genops(f) if isinstance(arg, str)}
    except (OSError, ValueError):
        return False
    return set(ACTIONFORMER_KEYS) <= strings


def is_predict_output(path: Path) -> bool:
    """True when ``path`` holds a file in one of the layouts predict writes."""
    return is_predict_results(path) or is_ego4d_submission(path) or is_actionformer_results(path)


def positive_number(value: object, name: str, what: str, example: str) -> float | None:
    """``value`` as a float (None stays None).

    Raises:
        UserInputError: naming ``name`` unless ``value`` is a finite number > 0 (``what``
            says what it measures, ``example`` is a value to suggest).
    """
    if value is None:
        return None
    number = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise UserInputError(
            f"{name}={value!r}: {what} must be a finite number > 0, e.g. {name}={example}"
        )
    return number


def video_timing(cfg: DictConfig) -> tuple[float | None, float | None]:
    """``(fps, duration)`` for every video: ``fps`` from the command line, else
    ``dataset.fps``, else ``dataset.default_fps`` (None when none is set); ``duration``
    from the command line (None = derived from the length). Each must be a finite number
    > 0 (:func:`positive_number`)."""
    data = cfg.dataset
    candidates = (
        ("fps", cfg.fps),
        ("dataset.fps", data.fps),
        ("dataset.default_fps", data.default_fps),
    )
    name, fps = next(((n, v) for n, v in candidates if v is not None), ("fps", None))
    fps = positive_number(fps, name, "the frame rate (frames per second)", "30")
    duration = positive_number(cfg.duration, "duration", "the video duration (seconds)", "60.5")
    return fps, duration


def check_output(output: Path, inputs: Sequence[Path]) -> None:
    """Refuse an ``output`` that is an input, a folder, or an existing file predict did not
    write (:func:`is_predict_output`); :func:`asl_tal.outputs.check_output`."""
    outputs.check_output(
        output,
        "output",
        [("one of the input feature files", path) for path in inputs],
        ours=is_predict_output,
        kind="a predict results file",
    )


class RawFeatureDataset(Dataset):
    """Un-annotated videos as evaluation samples.

    An item that cannot be read comes back as a :class:`Skipped` instead of a sample.

    Args:
        sources: the videos (see :func:`find_videos`).
        input_dim: expected feature width ``D``.
        fps, stride, window: grid geometry (``stride=None``: features per second, which
            needs ``duration``).
        duration: seconds, for every video (None = derived from ``T``).
        fixed_length: resample to this many steps (None = keep ``T``).
        resample_geometry: grid geometry after resampling (``resample_meta``).
    """

    def __init__(
        self,
        sources: list[VideoSource],
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
        self.sources = sources
        self.input_dim = input_dim
        self.fps, self.stride, self.duration = fps, stride, duration
        self.window = window if window is not None else stride
        self.fixed_length = fixed_length
        self.resample_geometry = resample_geometry

    def __len__(self) -> int:
        return len(self.sources)

    def meta(self, video_id: str, num_feats: int) -> VideoMeta:
        """Grid geometry of a video with ``num_feats`` steps."""
        if self.stride is None:
            fps, stride, window = num_feats / self.duration, 1.0, 1.0
        else:
            fps, stride, window = float(self.fps), float(self.stride), float(self.window)
        duration = self.duration or ((num_feats - 1) * stride + window) / fps
        return VideoMeta(video_id, duration, fps, stride, window, 0.0, num_feats)

    def read(self, source: VideoSource) -> VideoSample:
        """The sample of one video (raises on unreadable or invalid features)."""
        video_id = source.video_id
        array = load_array(source.path, video_id, source.key)
        array = check_features(array, self.input_dim, source.path, video_id)
        feats = torch.from_numpy(np.ascontiguousarray(array.T))
        meta = self.meta(video_id, feats.shape[1])
        if self.fixed_length is not None:
            meta = resample_meta(meta, feats.shape[1], self.fixed_length, self.resample_geometry)
            feats = resample_features(feats, self.fixed_length)
        empty = torch.zeros(0, 2)
        return VideoSample(feats.contiguous(), empty, torch.zeros(0, dtype=torch.long), meta)

    def __getitem__(self, index: int) -> VideoSample | Skipped:
        source = self.sources[index]
        try:
            return self.read(source)
        except (FeatureError, OSError, ValueError, TypeError) as err:
            return Skipped(source.name, _reason(err, source.path))


def collate_readable(
    samples: Sequence[VideoSample | Skipped], pad_multiple: int
) -> tuple[Batch | None, list[Skipped]]:
    """The batch of the readable samples (None if none) and the skipped ones."""
    skipped = [s for s in samples if isinstance(s, Skipped)]
    good = [s for s in samples if not isinstance(s, Skipped)]
    # evaluation pads to the longest video only: collate ignores max_seq_len with train=False
    batch = (
        collate(good, pad_multiple, None, train=False, train_padding="longest") if good else None
    )
    return batch, skipped


class ReadableBatches:
    """The batches of ``loader`` (of :func:`collate_readable`) with a sample left, recording
    the skipped samples in ``skipped`` and each yielded video's duration (seconds) in
    ``durations``."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.skipped: list[Skipped] = []
        self.durations: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch, skipped in self.loader:
            self.skipped.extend(skipped)
            if batch is not None:
                self.durations.update((m.video_id, m.duration) for m in batch.meta)
                yield batch


def guard_predict_step(module, names: dict[str, str]) -> list[Skipped]:
    """Make a failure of ``module.predict_step`` skip its batch's videos instead of ending
    the run; returns the list that collects them (``names``: video id -> source name)."""
    failed: list[Skipped] = []
    predict_step = module.predict_step

    def guarded(batch: Batch, *args, **kwargs):
        try:
            return predict_step(batch, *args, **kwargs)
        except Exception as err:  # one video's failure must not lose the others' detections
            reason = f"inference failed ({type(err).__name__}: {err})"
            failed.extend(Skipped(names.get(v, v), reason) for v in batch.video_ids)
            return []

    module.predict_step = guarded
    return failed


@dataclass
class PredictReport:
    """What a predict run did: ``output`` (None when nothing was written), the number of
    videos in it, the inputs skipped (errors) or ignored (not feature files), and the plots
    written and those that could not be (``plot=true``)."""

    output: Path | None
    num_videos: int
    skipped: list[Skipped]
    ignored: list[Skipped]
    plots: list[Path] = field(default_factory=list)
    plot_failures: list[Skipped] = field(default_factory=list)


def _write_atomically(output: Path, write) -> None:
    """``write(tmp)`` next to ``output``, then move it in place (no half-written output)."""
    target = output.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def report_summary(report: PredictReport) -> None:
    """One line per skipped and ignored input, to the log and to stderr."""
    lines = []
    if report.ignored:
        lines.append(f"ignored {len(report.ignored)} input entries (not feature files):")
        lines.extend(f"  ignored {s.line()}" for s in report.ignored)
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} inputs (no detections for them):")
        lines.extend(f"  skipped {s.line()}" for s in report.skipped)
    if report.plot_failures:
        lines.append(
            f"{len(report.plot_failures)} plots could not be written (the detections are):"
        )
        lines.extend(f"  no plot {s.line()}" for s in report.plot_failures)
    for line in lines:
        log.warning("%s", line)
        print(line, file=sys.stderr)


def predict(cfg: DictConfig) -> PredictReport:
    """Run ``cfg.ckpt_path`` on ``cfg.input``; writes the detections of every readable video.

    Raises a user error before any work for a missing or bad ``input``, a bad ``output``
    or a config value out of range, and after the run when no video could be read (nothing
    is written then).
    """
    if OmegaConf.is_missing(cfg, "input"):
        raise UserInputError(
            "input=... is required: a feature file (.npy, .npz, .pt, .h5) or a folder of them "
            "(e.g. input=features/)"
        )
    output_format, retrieval_top_k = cfg.output_format, cfg.retrieval_top_k
    check_output_format(output_format, retrieval_top_k)
    check_run_config(cfg, training=False)
    if cfg.plot:
        check_plot_top_k(cfg.plot_top_k)
    video_timing(cfg)  # the command line's values, checked before the checkpoint is read
    inventory = find_videos(cfg.input)
    default_output = run_dir() / "results" / DEFAULT_OUTPUT_NAMES[output_format]
    output = Path(cfg.output) if cfg.output else default_output
    check_output(output, inventory.files)
    local_checkpoint_path(cfg.get("ckpt_path"))
    cfg = with_checkpoint_settings(cfg, checkpoint_hparams(cfg.ckpt_path), command_line_overrides())
    data = cfg.dataset
    fps, duration = video_timing(cfg)
    log.info(
        "feature grid of dataset %s: width %s, stride %s",
        data.name,
        data.input_dim,
        data.feat_stride,
    )
    if OmegaConf.is_list(data.input_dim):
        raise UserInputError(
            "predict reads single-stream features; this checkpoint's dataset has several streams"
        )
    module = load_checkpoint(
        cfg.ckpt_path,
        input_dim=int(data.input_dim),
        postprocess=OmegaConf.to_container(cfg.postprocess, resolve=True),
    )
    if module.num_model_classes != len(module.class_names):
        raise UserInputError(
            f"{cfg.ckpt_path}: a class-agnostic checkpoint (ActivityNet's second variant) needs "
            "video-level class scores to name its detections; use python -m asl_tal.eval "
            "with dataset.ext_score_file instead"
        )
    dataset = RawFeatureDataset(
        inventory.sources,
        input_dim=int(data.input_dim),
        fps=fps,
        stride=data.feat_stride,
        window=data.feat_window,
        duration=duration,
        fixed_length=data.fixed_length,
        resample_geometry=data.resample_geometry,
    )
    detections: dict = {}
    batches = ReadableBatches(
        DataLoader(
            dataset,
            batch_size=1,
            collate_fn=partial(collate_readable, pad_multiple=module.detector.required_multiple),
        )
    )
    failed = guard_predict_step(module, {s.video_id: s.name for s in inventory.sources})
    if inventory.sources:
        trainer = build_trainer(cfg, callbacks=False)
        predictions = trainer.predict(module, dataloaders=batches) or []
        detections = dict(item for batch in predictions for item in batch)
    skipped = inventory.skipped + batches.skipped + failed
    report = PredictReport(output, len(detections), skipped, inventory.ignored)
    if not detections:
        report_summary(report)
        raise UserInputError(
            f"input {cfg.input}: no video could be read and run (listed above); nothing written"
        )
    class_map = ClassMap(tuple(module.class_names))
    with writing(output):
        _write_atomically(
            output,
            lambda p: write_results(p, detections, class_map, output_format, retrieval_top_k),
        )
    log.info("%d videos, detections written to %s (%s)", len(detections), output, output_format)
    if cfg.plot:
        plot_dir = Path(cfg.plot_dir) if cfg.plot_dir else run_dir() / "plots"
        report.plots, plot_failures = write_plots(
            plot_dir,
            list(detections),
            lambda video_id: plot_detections(
                video_id,
                batches.durations[video_id],
                detections[video_id],
                class_map.names,
                cfg.plot_top_k,
            ),
        )
        report.plot_failures = [Skipped(path, reason) for path, reason in plot_failures]
        log.info("%d timeline plots written to %s", len(report.plots), plot_dir)
    report_summary(report)
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors(), outputs.results_folder(run_dir(), "predict"):
        report = predict(cfg)
    if report.skipped:
        print(
            f"error: {len(report.skipped)} inputs skipped (listed above); the detections of "
            f"the other {report.num_videos} videos are in {report.output}",
            file=sys.stderr,
        )
        raise SystemExit(SKIPPED_EXIT)


if __name__ == "__main__":
    main()
