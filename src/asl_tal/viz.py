"""Figures of what a model learned: action sensitivity, detection timelines, PR curves, AP.

Every plotting function builds a stand-alone :class:`matplotlib.figure.Figure` (no pyplot
state, safe under the Agg backend and in worker processes) and returns it; nothing is shown.
:func:`figure_to_png` and :func:`figure_to_array` turn a figure into a file or an image array.
Names that come from the data (class names, video ids) are drawn as plain text, never parsed
as mathtext or TeX: ``cls$_$0`` shows as it is written (:data:`PLAIN`).

Sensitivity records are those of :meth:`asl_tal.detector.ASLDetector.sensitivity_maps`
(one dict per GT instance, level-0 frames in grid units). The synthetic benchmark's annotation
file also records each instance's sub-phases (``start``, ``core``, ``end`` in seconds);
:func:`load_phases` and :func:`match_phases` attach them to a record.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.batch import VideoMeta
from asl_tal.errors import UserInputError
from asl_tal.metrics.matching import (
    GroundTruth,
    ground_truth_from_annotations,
    precision_recall_curve,
    ranked_true_positives,
    segment_tiou,
)
from asl_tal.objective.sensitivity import gaussian
from asl_tal.postprocess.decode import Detections

CLS_CURVES = ("p_cls", "q_cls", "h_cls")
LOC_CURVES = ("p_loc", "q_loc", "h_loc")
SENSITIVITY_CURVES = CLS_CURVES + LOC_CURVES
PHASES = ("start", "core", "end")
PHASE_COLORS = {"start": "tab:orange", "core": "tab:green", "end": "tab:purple"}
CURVE_STYLE = {"p": ":", "q": "--", "h": "-"}
MATCH_COLORS = {"match": "tab:green", "duplicate": "tab:orange", "miss": "tab:red"}
# text properties of every label that can hold a name from the data: drawn as written
# (matplotlib would otherwise read `$...$` as mathtext, or the whole text as TeX with usetex)
PLAIN = {"parse_math": False, "usetex": False}
# what matplotlib raises for a figure it cannot lay out or draw (a label it cannot parse, a
# value it cannot place): callers that must go on without the figure catch these
log = logging.getLogger("asl_tal.viz")

DRAW_ERRORS: tuple[type[Exception], ...] = (ValueError, RuntimeError, OverflowError)


def file_stem(name: str) -> str:
    """``name`` with every character but letters, digits, ``-``, ``_`` and ``.`` replaced by
    ``_``: a file name part for a video id (an HDF5 dataset name may hold ``/``)."""
    return re.sub(r"[^\w.-]", "_", name)


def plain_legend(legend) -> None:
    """Draw the entries of ``legend`` (a matplotlib ``Legend``) as plain text (:data:`PLAIN`)."""
    for text in legend.get_texts():
        text.set(**PLAIN)


# --------------------------------------------------------------------------------------
# figure output
def figure_to_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG file (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def plot_file_name(video_id: str) -> str:
    """``<video_id>.png`` with every character but letters, digits, ``-``, ``_`` and ``.``
    replaced by ``_`` (an HDF5 dataset name may hold ``/``)."""
    return file_stem(video_id) + ".png"


def write_plots(
    directory: Path, video_ids: Sequence[str], draw: Callable[[str], Figure]
) -> tuple[list[Path], list[tuple[str, str]]]:
    """One PNG per video under ``directory``: ``draw(video_id)``'s figure, named by
    :func:`plot_file_name`.

    A plot that cannot be drawn (:data:`DRAW_ERRORS`) or written (``OSError``: read-only
    folder, disk full, a file where the folder belongs) is logged as a warning and returned
    among the failures as ``(path, reason)``; the others are still drawn. Returns the files
    written and the failures.
    """
    written: list[Path] = []
    failures: list[tuple[str, str]] = []
    for video_id in video_ids:
        path = directory / plot_file_name(video_id)
        try:
            fig = draw(video_id)
            written.append(figure_to_png(fig, path))
        except (OSError, *DRAW_ERRORS) as err:
            reason = f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}"
            failures.append((str(path), reason))
            log.warning("could not write plot %s (%s); the run goes on", path, reason)
    return written, failures


def check_plot_top_k(plot_top_k: object) -> None:
    """Refuse a ``plot_top_k`` that is not a positive integer (before any work)."""
    if type(plot_top_k) is not int or plot_top_k < 1:
        raise UserInputError(f"plot_top_k must be a positive integer, got {plot_top_k!r}")


def figure_to_array(fig: Figure, dpi: int = 100) -> np.ndarray:
    """Render ``fig`` to an ``(H, W, 3)`` uint8 RGB image."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------------------
# action sensitivity
def load_phases(json_path: str | Path) -> dict[str, list[dict]]:
    """Per video, the annotation entries that record ``phases`` (the synthetic benchmark).

    Returns ``{video_id: [{"label": name, "segment": [s, e], "phases": {...}}, ...]}``;
    videos whose entries have no ``phases`` are left out (an empty dict for real datasets).
    """
    path = Path(json_path)
    database = json.loads(path.read_text()).get("database")
    if not isinstance(database, dict):
        raise ValueError(f"{path}: no 'database' object")
    table = {}
    for video_id, video in database.items():
        entries = [a for a in video.get("annotations", []) if "phases" in a]
        bad = [a for a in entries if not set(PHASES) <= set(a["phases"])]
        if bad:
            raise ValueError(f"{path}: video {video_id!r}: 'phases' lacks one of {PHASES}")
        if entries:
            table[video_id] = entries
    return table


def match_phases(
    record: Mapping,
    meta: VideoMeta,
    phase_table: Mapping[str, list[dict]],
    class_names: Sequence[str],
    tol: float = 1e-2,
) -> dict[str, tuple[float, float]] | None:
    """The sub-phases (seconds) of the annotation entry behind a sensitivity record.

    The entry is the one of ``meta.video_id`` with the record's class and a segment within
    ``tol`` seconds of the record's (grid) segment; None when there is none.
    """
    entries = phase_table.get(meta.video_id, [])
    name = class_names[record["label"]]
    segment = meta.grid_to_seconds(np.asarray(record["segment"], dtype=np.float64))
    for entry in entries:
        if entry["label"] == name and np.abs(np.asarray(entry["segment"]) - segment).max() <= tol:
            return {phase: tuple(entry["phases"][phase]) for phase in PHASES}
    return None


def _class_gaussians(record: Mapping, t: np.ndarray) -> dict[str, np.ndarray]:
    """``g(x; mu, sigma)`` of the record's class at level-0 positions ``t`` (grid units).

    ``x = (m - t) / (s L)`` with ``s = 1`` on level 0, ``m`` and ``L`` the GT's centre and
    length. Keys ``g_cls``, ``g_L``, ``g_R``; empty without class-level sensitivity.
    """
    params = record.get("gaussians") or {}
    if not params:
        return {}
    a, b = (float(v) for v in record["segment"])
    x = torch.from_numpy(((a + b) / 2 - t) / max(b - a, 1e-6))
    return {
        f"g_{part}": gaussian(
            x, torch.tensor(params[f"mu_{part}"]), torch.tensor(params[f"sigma_{part}"])
        ).numpy()
        for part in ("cls", "L", "R")
    }


def plot_sensitivity(
    instance_map: Mapping,
    phases: Mapping[str, Sequence[float]] | None = None,
    meta: VideoMeta | None = None,
    class_name: str | None = None,
) -> Figure:
    """Action sensitivity across one GT instance (the supplementary's Figure a).

    Two panels over the instance's frames: classification (``p_cls``, ``q_cls``, ``h_cls``
    and the class Gaussian ``g(x; mu_cls, sigma_cls)``) and localization (``p_loc``,
    ``q_loc``, ``h_loc`` and ``g`` of ``mu_L/sigma_L`` and ``mu_R/sigma_R``). Curves a switch
    turned off (None) are not drawn. Each line's ``gid`` is its curve name.

    Args:
        instance_map: one record of ``ASLDetector.sensitivity_maps`` (``frames (F,)`` grid
            positions, curves ``(F,)``, ``segment [a, b]`` in grid units, ``gaussians``).
        phases: ``{"start": (s, e), "core": ..., "end": ...}`` shaded behind the curves, in
            the x-axis units (seconds with ``meta``, grid units without).
        meta: the instance's video; when given the x-axis is in seconds, else grid units.
        class_name: shown in the title (else the class id).
    """
    to_axis = meta.grid_to_seconds if meta is not None else (lambda g: g)
    frames = np.asarray(instance_map["frames"], dtype=np.float64)
    a, b = (float(v) for v in instance_map["segment"])
    fine = np.linspace(a, b, 200)
    gaussians = _class_gaussians(instance_map, fine)

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax_cls, ax_loc = fig.subplots(2, 1, sharex=True)
    panels = (
        (ax_cls, CLS_CURVES, ("g_cls",), "classification"),
        (ax_loc, LOC_CURVES, ("g_L", "g_R"), "localization"),
    )
    for ax, curves, gauss_names, title in panels:
        if phases:
            for phase in PHASES:
                if phase in phases:
                    lo, hi = phases[phase]
                    ax.axvspan(
                        lo, hi, color=PHASE_COLORS[phase], alpha=0.12, label=phase, gid=phase
                    )
        for name in curves:
            values = instance_map.get(name)
            if values is not None:
                ax.plot(
                    to_axis(frames),
                    np.asarray(values),
                    CURVE_STYLE[name[0]],
                    marker="." if len(frames) < 60 else None,
                    label=name,
                    gid=name,
                )
        for name in gauss_names:
            if name in gaussians:
                ax.plot(
                    to_axis(fine),
                    gaussians[name],
                    color="0.75",
                    lw=3,
                    zorder=1,
                    label=name,
                    gid=name,
                )
        ax.set_ylabel(f"{title} sensitivity")
        ax.set_ylim(bottom=0.0)
        plain_legend(ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small"))
        ax.grid(alpha=0.3)
    ax_loc.set_xlim(to_axis(a), to_axis(b))
    ax_loc.set_xlabel("time (s)" if meta is not None else "time (feature grid)")
    label = class_name if class_name is not None else f"class {instance_map['label']}"
    video = f"{meta.video_id}, " if meta is not None else ""
    fig.suptitle(f"{label} ({video}[{to_axis(a):.1f}, {to_axis(b):.1f}])", **PLAIN)
    return fig


def phase_means(
    instance_map: Mapping, phases: Mapping[str, Sequence[float]], meta: VideoMeta
) -> dict[str, dict[str, float]]:
    """Mean of each curve over the instance's frames in each sub-phase.

    A frame belongs to a phase ``[s, e)`` (seconds) when its centre
    ``meta.grid_to_seconds(frame)`` lies in it. Returns ``{curve: {phase: mean}}`` for the
    curves present; NaN for a phase without frames.
    """
    centre = meta.grid_to_seconds(np.asarray(instance_map["frames"], dtype=np.float64))
    inside = {phase: (centre >= phases[phase][0]) & (centre < phases[phase][1]) for phase in PHASES}
    out = {}
    for name in SENSITIVITY_CURVES:
        values = instance_map.get(name)
        if values is None:
            continue
        values = np.asarray(values, dtype=np.float64)
        out[name] = {
            phase: float(values[m].mean()) if m.any() else float("nan")
            for phase, m in inside.items()
        }
    return out


def sensitivity_by_phase(per_instance: Sequence[Mapping[str, Mapping[str, float]]]) -> dict:
    """Instance-averaged :func:`phase_means`: ``{curve: {phase: mean over instances}}``.

    Each instance counts once whatever its length; instances without frames in a phase are
    left out of that phase's mean. ``count`` gives the number of instances per phase.
    """
    if not per_instance:
        raise ValueError("sensitivity_by_phase: no instance")
    curves = list(per_instance[0])
    table = np.array(
        [[[inst[c][p] for p in PHASES] for c in curves] for inst in per_instance]
    )  # (I, curves, phases)
    present = ~np.isnan(table)
    counts = present[:, 0].sum(axis=0)
    sums = np.where(present, table, 0.0).sum(axis=0)
    means = np.where(present.any(axis=0), sums / np.maximum(present.sum(axis=0), 1), np.nan)
    out = {c: dict(zip(PHASES, means[i].tolist(), strict=True)) for i, c in enumerate(curves)}
    out["count"] = dict(zip(PHASES, counts.tolist(), strict=True))
    return out


def sensitivity_by_position(records: Sequence[Mapping], parts: int = 5) -> dict:
    """How each curve runs across an action, start to end, over many instances.

    Each instance's frames (records of ``ASLDetector.sensitivity_maps``, in frame order)
    are split into ``parts`` nearly equal consecutive runs (``numpy.array_split``);
    instances with fewer than ``parts`` frames are left out.

    Returns:
        ``{curve: {"means": [parts], "spread": float, "lowest": [parts]}}`` for the curves
        present: the mean over instances of each part's mean, the median over instances of
        the within-instance ``sd / mean``, and in how many instances the lowest frame lies
        in each part; plus ``"count"``, the number of instances used.
    """
    used = [r for r in records if len(r["frames"]) >= parts]
    if not used:
        raise ValueError(f"sensitivity_by_position: no instance with {parts} frames or more")
    out: dict = {"count": len(used)}
    for name in SENSITIVITY_CURVES:
        if used[0].get(name) is None:
            continue
        curves = [np.asarray(r[name], dtype=np.float64) for r in used]
        split = [np.array_split(v, parts) for v in curves]
        part_means = np.array([[p.mean() for p in runs] for runs in split])
        lowest = np.zeros(parts, dtype=int)
        for v, runs in zip(curves, split, strict=True):
            part_of_frame = np.repeat(np.arange(parts), [len(p) for p in runs])
            lowest[part_of_frame[np.argmin(v)]] += 1
        out[name] = {
            "means": part_means.mean(axis=0).tolist(),
            "spread": float(np.median([v.std() / v.mean() for v in curves])),
            "lowest": lowest.tolist(),
        }
    return out


# --------------------------------------------------------------------------------------
# detections of one video
def match_status(
    gt: VideoAnnotation, detections: Detections, tiou_thresh: float
) -> tuple[np.ndarray, np.ndarray]:
    """How each detection fares against the video's GT, with the metric's greedy matching.

    Returns ``status (K,)`` str (``match``: the metric counts it a true positive at
    ``tiou_thresh``; ``duplicate``: a same-class GT overlaps it by ``tiou_thresh`` but was
    taken by a higher-scoring detection; ``miss``: otherwise) and ``best_tiou (K,)``, the
    highest tIoU with a same-class GT (0 if none).
    """
    segments = detections.segments.detach().cpu().double().numpy().reshape(-1, 2)
    scores = detections.scores.detach().cpu().double().numpy().reshape(-1)
    labels = detections.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    gt_arrays = GroundTruth(
        video_idx=np.zeros(len(gt.labels), dtype=np.int64),
        segments=np.asarray(gt.segments, dtype=np.float64).reshape(-1, 2),
        labels=np.asarray(gt.labels, dtype=np.int64),
    )
    num_classes = int(max(labels.max(initial=-1), gt_arrays.labels.max(initial=-1))) + 1
    tp, index, _ = ranked_true_positives(
        gt_arrays,
        np.zeros(len(labels), dtype=np.int64),
        segments,
        scores,
        labels,
        num_classes,
        np.array([tiou_thresh]),
    )
    matched = np.zeros(len(labels), dtype=bool)
    matched[index] = tp[0]
    tiou = segment_tiou(segments[:, None, :], gt_arrays.segments[None, :, :])
    same = labels[:, None] == gt_arrays.labels[None, :]
    best = np.where(same, tiou, 0.0).max(axis=1, initial=0.0)
    status = np.where(matched, "match", np.where(best >= tiou_thresh, "duplicate", "miss"))
    return status, best


def top_detections(detections: Detections, top_k: int) -> Detections:
    """The ``top_k`` highest-scoring detections on the CPU, best first (ties keep order)."""
    order = torch.argsort(detections.scores.detach().cpu(), descending=True, stable=True)
    return Detections(
        *(
            x.detach().cpu()[order[:top_k]]
            for x in (detections.segments, detections.scores, detections.labels)
        )
    )


def plot_timeline(
    gt: VideoAnnotation,
    detections: Detections,
    class_names: Sequence[str],
    top_k: int = 20,
    tiou_thresh: float = 0.5,
) -> Figure:
    """GT segments against the top-scoring detections of one video (seconds).

    Top panel: one row per GT class, one bar (``Rectangle``, gid ``"gt"``) per GT segment.
    Bottom panel: the ``top_k`` detections by score, one row each (best on top), coloured by
    :func:`match_status` at ``tiou_thresh`` — green: true positive, orange: duplicate of a
    matched GT, red: no same-class GT at ``tiou_thresh`` — with opacity rising with the
    best same-class tIoU; the row label gives class, score and that tIoU.
    """
    top = top_detections(detections, top_k)
    status, best = match_status(gt, top, tiou_thresh)
    gt_classes = np.unique(gt.labels)
    rows = np.searchsorted(gt_classes, gt.labels)

    num_det = len(top)
    fig = Figure(
        figsize=(10, 2.0 + 0.35 * (len(gt_classes) + max(num_det, 2))), layout="constrained"
    )
    ax_gt, ax_det = fig.subplots(
        2, 1, sharex=True, height_ratios=[max(len(gt_classes), 1), max(num_det, 2)]
    )
    segments = np.asarray(gt.segments, dtype=np.float64).reshape(-1, 2)
    ax_gt.barh(
        rows,
        segments[:, 1] - segments[:, 0],
        left=segments[:, 0],
        height=0.6,
        color="tab:blue",
        alpha=0.7,
        edgecolor="k",
        gid="gt",
    )
    ax_gt.set_yticks(np.arange(len(gt_classes)), [class_names[c] for c in gt_classes], **PLAIN)
    ax_gt.set_ylim(len(gt_classes) - 0.5, -0.5)
    ax_gt.set_title(f"{gt.video_id}: ground truth ({len(gt.labels)} segments)", **PLAIN)

    if num_det:
        det_segments = top.segments.double().numpy()
        colors = [MATCH_COLORS[s] for s in status]
        bars = ax_det.barh(
            np.arange(num_det),
            det_segments[:, 1] - det_segments[:, 0],
            left=det_segments[:, 0],
            height=0.6,
            color=colors,
            edgecolor="k",
            gid="detection",
        )
        for bar, tiou in zip(bars, best, strict=True):
            bar.set_alpha(0.35 + 0.65 * float(tiou))
        ax_det.set_yticks(
            np.arange(num_det),
            [
                f"{class_names[int(c)]}  {s:.2f}  tIoU {t:.2f}"
                for c, s, t in zip(top.labels.tolist(), top.scores.tolist(), best, strict=True)
            ],
            fontsize="small",
            **PLAIN,
        )
        ax_det.set_ylim(num_det - 0.5, -0.5)
    else:
        ax_det.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax_det.transAxes)
        ax_det.set_yticks([])
    ax_det.legend(
        handles=[
            Patch(color=MATCH_COLORS["match"], label=f"true positive (tIoU ≥ {tiou_thresh:g})"),
            Patch(color=MATCH_COLORS["duplicate"], label="duplicate"),
            Patch(color=MATCH_COLORS["miss"], label="no match"),
        ],
        loc="lower right",
        fontsize="small",
    )
    ax_det.set_title(f"top {num_det} detections (opacity: best same-class tIoU)")
    ax_det.set_xlim(0.0, gt.duration)
    ax_det.set_xlabel("time (s)")
    return fig


def plot_detections(
    video_id: str,
    duration: float,
    detections: Detections,
    class_names: Sequence[str],
    top_k: int = 20,
) -> Figure:
    """The top-scoring detections of one video without ground truth (``predict plot=true``).

    One panel over ``[0, duration]`` seconds: the ``top_k`` detections by score, one row
    each (best on top), one bar (``Rectangle``, gid ``"detection"``) per detection, coloured
    by class (matplotlib's ``tab10`` cycle, a legend entry per class shown) with opacity
    rising with the score; the row label gives class and score.
    """
    top = top_detections(detections, top_k)
    num_det = len(top)
    fig = Figure(figsize=(10, 1.6 + 0.35 * max(num_det, 2)), layout="constrained")
    ax = fig.subplots()
    if num_det:
        segments = top.segments.double().numpy().reshape(-1, 2)
        labels = top.labels.numpy().astype(np.int64)
        scores = top.scores.double().numpy()
        bars = ax.barh(
            np.arange(num_det),
            segments[:, 1] - segments[:, 0],
            left=segments[:, 0],
            height=0.6,
            color=[class_colour(c) for c in labels],
            edgecolor="k",
            gid="detection",
        )
        for bar, score in zip(bars, scores, strict=True):
            bar.set_alpha(0.35 + 0.65 * float(np.clip(score, 0.0, 1.0)))
        ax.set_yticks(
            np.arange(num_det),
            [f"{class_names[c]}  {s:.2f}" for c, s in zip(labels, scores, strict=True)],
            fontsize="small",
            **PLAIN,
        )
        ax.set_ylim(num_det - 0.5, -0.5)
        shown = sorted(set(labels.tolist()))
        plain_legend(
            ax.legend(
                handles=[Patch(color=class_colour(c), label=class_names[c]) for c in shown],
                loc="lower right",
                fontsize="small",
            )
        )
    else:
        ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title(f"{video_id}: top {num_det} detections (opacity: score)", **PLAIN)
    ax.set_xlim(0.0, duration)
    ax.set_xlabel("time (s)")
    return fig


def class_colour(label: int) -> str:
    """The colour of class ``label`` in :func:`plot_detections` (``tab10`` cycle)."""
    return f"C{int(label) % 10}"


# --------------------------------------------------------------------------------------
# dataset-level results
def pr_curves(
    gt: Mapping[str, VideoAnnotation],
    detections: Mapping[str, Detections],
    num_classes: int,
    thresholds: Sequence[float],
    label: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision–recall data of per-video detections against a subset's GT.

    Detections of videos outside ``gt`` count as false positives (the metric's protocol).
    ``label=None`` pools all classes (micro), else one class. Returns ``precision (T, N)``,
    ``recall (T, N)``, ``scores (N,)`` as :func:`asl_tal.metrics.matching.precision_recall_curve`.
    """
    video_index = {vid: i for i, vid in enumerate(gt)}
    dets = list(detections.items())
    empty = np.zeros(0)
    pred_video = np.concatenate(
        [np.full(len(d), video_index.get(vid, -1), dtype=np.int64) for vid, d in dets]
        or [empty.astype(np.int64)]
    )
    segments = np.concatenate(
        [d.segments.detach().cpu().double().numpy().reshape(-1, 2) for _, d in dets]
        or [empty.reshape(0, 2)]
    )
    scores = np.concatenate([d.scores.detach().cpu().double().numpy() for _, d in dets] or [empty])
    labels = np.concatenate(
        [d.labels.detach().cpu().numpy().astype(np.int64) for _, d in dets]
        or [empty.astype(np.int64)]
    )
    return precision_recall_curve(
        ground_truth_from_annotations(dict(gt), video_index),
        pred_video,
        segments,
        scores,
        labels,
        num_classes,
        np.asarray(thresholds, dtype=np.float64),
        label,
    )


def plot_pr_curves(
    precision: np.ndarray,
    recall: np.ndarray,
    thresholds: Sequence[float],
    title: str = "all classes (micro)",
) -> Figure:
    """One precision–recall curve per tIoU threshold.

    Args:
        precision, recall: ``(T, N)`` after each ranked prediction (:func:`pr_curves`).
        thresholds: ``(T,)`` tIoU thresholds (legend; each line's ``gid`` is ``tiou=<thr>``).
        title: what the curves pool, e.g. ``"all classes (micro)"`` or a class name.
    """
    precision, recall = np.atleast_2d(precision), np.atleast_2d(recall)
    if precision.shape != recall.shape or precision.shape[0] != len(thresholds):
        raise ValueError(
            f"plot_pr_curves: precision {precision.shape} and recall {recall.shape} must both "
            f"be (T, N) with T = {len(thresholds)} thresholds"
        )
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for thr, p, r in zip(thresholds, precision, recall, strict=True):
        final = r[-1] if len(r) else 0.0
        ax.plot(
            r,
            p,
            drawstyle="steps-post",
            gid=f"tiou={thr:g}",
            label=f"tIoU {thr:g} (recall {final:.2f})",
        )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision–recall, {title}", **PLAIN)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    return fig


def plot_per_class_ap(
    per_class_ap: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    thresholds: Sequence[float],
) -> Figure:
    """Bar chart of each class's AP averaged over the tIoU thresholds.

    Args:
        per_class_ap: ``(T, C)`` (the metric's ``per_class_AP``) or ``(C,)``; NaN marks a class
            without GT, which gets no bar.
        class_names: ``(C,)`` names.
        thresholds: ``(T,)`` tIoU thresholds the AP is averaged over (title).

    Bars (gid ``"ap"``) are in class order; a dashed line marks their mean (the average mAP).
    """
    ap = np.atleast_2d(np.asarray(torch.as_tensor(per_class_ap).double().cpu()))
    if ap.shape[1] != len(class_names):
        raise ValueError(f"plot_per_class_ap: {ap.shape[1]} AP columns, {len(class_names)} names")
    has_gt = ~np.isnan(ap).all(axis=0)
    heights = ap[:, has_gt].mean(axis=0)
    names = [n for n, keep in zip(class_names, has_gt, strict=True) if keep]
    fig = Figure(figsize=(max(5.0, 0.45 * len(names) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    ax.bar(np.arange(len(names)), heights, color="tab:blue", gid="ap")
    if len(heights):
        ax.axhline(heights.mean(), color="k", ls="--", lw=1, label=f"mean {heights.mean():.3f}")
        ax.legend(fontsize="small")
    ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize="small", **PLAIN)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("AP")
    thr = ", ".join(f"{t:g}" for t in thresholds)
    ax.set_title(f"per-class AP, mean over tIoU {{{thr}}}")
    return fig
