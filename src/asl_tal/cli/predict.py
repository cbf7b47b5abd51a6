"""Detect actions in raw features: ``asl-predict ckpt_path=... input=PATH``.

``input`` is one feature file or a folder of them, ``(T, D)`` time-major: ``.npy``, ``.npz``
(key ``feats``) or ``.pt`` named ``<video_id><ext>``, one per video, or ``.h5`` / ``.hdf5``
holding one dataset per video id (suffixes in any case; :mod:`asl_tal.data.feature_folder`).
No annotation is needed: each video's duration is ``((T − 1)·stride + window) / fps`` from
the dataset config (docs/data.md §3) unless ``duration`` is given. The checkpoint's data
module reads, resamples and batches the videos as it does its test subset
(``dataset.eval_batch_size``; ``TALDataModule.unlabelled_loader``). Writes the detections
with class names as labels in ``output_format`` (:mod:`asl_tal.submission`): an ActivityNet
results JSON (default), an Ego4D Moment Queries submission (``ego4d``) or ActionFormer's
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
import pickletools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from asl_tal import outputs
from asl_tal.checkpoints import (
    checkpoint_hparams,
    load_checkpoint,
    local_checkpoint_path,
    with_checkpoint_settings,
)
from asl_tal.cli.build import build_datamodule, build_trainer, check_run_config
from asl_tal.cli.run_folder import command_line_overrides, run_dir
from asl_tal.cli.user_errors import user_errors
from asl_tal.conf import CONFIG_PATH
from asl_tal.data.annotations import ClassMap
from asl_tal.data.batch import Batch
from asl_tal.data.feature_folder import Inventory, Skipped, find_videos
from asl_tal.errors import UserInputError
from asl_tal.lit_module import ASLLitModule
from asl_tal.outputs import writing
from asl_tal.submission import (
    ACTIONFORMER_KEYS,
    EGO4D_CHALLENGE,
    check_output_format,
    write_results,
)
from asl_tal.viz import check_plot_top_k, plot_detections, write_plots

log = logging.getLogger("asl_tal.predict")

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
    """The command line's ``(fps, duration)`` for every video (None = not given).

    Each given one of ``fps``, ``dataset.fps``, ``dataset.default_fps`` and ``duration``
    must be a finite number > 0 (:func:`positive_number`); the data layer takes the frame
    rate in that order (:func:`~asl_tal.data.dataset.video_meta`).
    """
    what, example = "the frame rate (frames per second)", "30"
    positive_number(cfg.dataset.fps, "dataset.fps", what, example)
    positive_number(cfg.dataset.default_fps, "dataset.default_fps", what, example)
    fps = positive_number(cfg.fps, "fps", what, example)
    duration = positive_number(cfg.duration, "duration", "the video duration (seconds)", "60.5")
    return fps, duration


def check_timing(data: DictConfig, fps: float | None, duration: float | None) -> None:
    """Refuse a dataset that counts frames (``data.feat_stride``) without any frame rate, and
    one that measures features per second (``feat_stride`` null) without ``duration``."""
    if data.feat_stride is None and duration is None:
        raise UserInputError(
            "this dataset measures features per second (dataset.feat_stride=null): "
            "give the video duration with duration=SECONDS"
        )
    if (
        data.feat_stride is not None
        and fps is None
        and data.fps is None
        and data.default_fps is None
    ):
        raise UserInputError("no frame rate: set fps=... (or dataset.fps / dataset.default_fps)")


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


def check_inputs(cfg: DictConfig) -> tuple[Inventory, Path]:
    """The videos of ``cfg.input`` and the results file, every value of ``cfg`` checked
    first; nothing is read but the input folder's listing (and HDF5 files' member names).

    Raises:
        UserInputError: a missing ``input``, a bad value, ``input`` or ``output``.
    """
    if OmegaConf.is_missing(cfg, "input"):
        raise UserInputError(
            "input=... is required: a feature file (.npy, .npz, .pt, .h5) or a folder of them "
            "(e.g. input=features/)"
        )
    check_output_format(cfg.output_format, cfg.retrieval_top_k)
    check_run_config(cfg, training=False)
    if cfg.plot:
        check_plot_top_k(cfg.plot_top_k)
    video_timing(cfg)  # the command line's values, checked before the checkpoint is read
    inventory = find_videos(cfg.input)
    default_output = run_dir() / "results" / DEFAULT_OUTPUT_NAMES[cfg.output_format]
    output = Path(cfg.output) if cfg.output else default_output
    check_output(output, inventory.files)
    local_checkpoint_path(cfg.get("ckpt_path"))
    return inventory, output


def load_predictor(cfg: DictConfig) -> ASLLitModule:
    """The checkpoint's module for ``cfg.dataset``'s single-stream features.

    Raises:
        UserInputError: several feature streams, or a class-agnostic checkpoint (its
            detections have no class to name).
    """
    data = cfg.dataset
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
            "video-level class scores to name its detections; use asl-eval "
            "with dataset.ext_score_file instead"
        )
    return module


def predict(cfg: DictConfig) -> PredictReport:
    """Run ``cfg.ckpt_path`` on ``cfg.input``; writes the detections of every readable video.

    Raises a user error before any work for a missing or bad ``input``, a bad ``output``
    or a config value out of range, and after the run when no video could be read (nothing
    is written then).
    """
    inventory, output = check_inputs(cfg)
    cfg = with_checkpoint_settings(cfg, checkpoint_hparams(cfg.ckpt_path), command_line_overrides())
    module = load_predictor(cfg)
    fps, duration = video_timing(cfg)
    check_timing(cfg.dataset, fps, duration)
    datamodule = build_datamodule(cfg, l3=module.detector.network.l3)
    batches = datamodule.unlabelled_loader(inventory.sources, fps=fps, duration=duration)
    failed = guard_predict_step(module, {s.video_id: s.name for s in inventory.sources})
    detections: dict = {}
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
        write_results(output, detections, class_map, cfg.output_format, cfg.retrieval_top_k)
    log.info("%d videos, detections written to %s (%s)", len(detections), output, cfg.output_format)
    if cfg.plot:
        report.plots, report.plot_failures = plot_videos(
            cfg, detections, batches.durations, class_map
        )
    report_summary(report)
    return report


def plot_videos(
    cfg: DictConfig, detections: dict, durations: dict[str, float], class_map: ClassMap
) -> tuple[list[Path], list[Skipped]]:
    """Each video's top ``cfg.plot_top_k`` detections as ``<plot_dir>/<video_id>.png``: the
    plots written and those that could not be (:func:`~asl_tal.viz.write_plots`)."""
    plot_dir = Path(cfg.plot_dir) if cfg.plot_dir else run_dir() / "plots"
    written, failures = write_plots(
        plot_dir,
        list(detections),
        lambda video_id: plot_detections(
            video_id, durations[video_id], detections[video_id], class_map.names, cfg.plot_top_k
        ),
    )
    log.info("%d timeline plots written to %s", len(written), plot_dir)
    return written, [Skipped(path, reason) for path, reason in failures]


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
