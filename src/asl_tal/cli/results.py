"""A test run's results files: ``results/<stage>_metrics.json`` and the detections."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import lightning as L
import torch

from asl_tal.data.datamodules import TALDataModule
from asl_tal.lit_module import ASLLitModule
from asl_tal.outputs import writing
from asl_tal.submission import write_activitynet_results

log = logging.getLogger("asl_tal")


def metrics_to_json(result: dict, thresholds: list[float], class_names: list[str]) -> dict:
    """The metric's result in the offline scorer's layout (fractions in [0, 1])."""
    per_class = result["per_class_AP"].cpu()
    out = {
        "tiou": [float(t) for t in thresholds],
        "mAP": [float(v) for v in result["mAP"]],
        "average_mAP": float(result["average_mAP"]),
        "per_class_AP": {
            name: [None if math.isnan(v) else float(v) for v in per_class[:, c].tolist()]
            for c, name in enumerate(class_names)
        },
    }
    if "recall" in result:
        out["recall"] = {key: values.tolist() for key, values in result["recall"].items()}
    return out


def write_test_results(
    trainer: L.Trainer,
    module: ASLLitModule,
    datamodule: TALDataModule,
    directory: Path,
    subset: str,
    weights: str,
) -> dict | None:
    """Write ``results/<subset>_metrics.json`` (:func:`write_test_metrics`) and
    ``results/<subset>_detections.json`` (ActivityNet results format) on rank 0.

    Each rank holds the detections of its share of the videos; they are gathered first. A
    video that a distributed sampler repeated keeps one copy. Returns the gathered
    detections (``{video_id: Detections}``) on rank 0, None on the other ranks.
    """
    detections = module.detections
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, detections)
        detections = [item for part in gathered for item in part]
    if not trainer.is_global_zero:
        return None
    out = directory / "results"
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    detections_file = out / f"{subset}_detections.json"
    with writing(detections_file):
        write_activitynet_results(detections_file, dict(detections), datamodule.class_map)
    write_test_metrics(trainer, module, directory, subset, weights)
    return dict(detections)


def write_test_metrics(
    trainer: L.Trainer, module: ASLLitModule, directory: Path, name: str, weights: str
) -> None:
    """Write the last test's metrics to ``results/<name>_metrics.json`` on rank 0, with
    ``weights`` (``best`` | ``last`` | the checkpoint evaluated) under the key ``weights``."""
    if not trainer.is_global_zero:
        return
    out = directory / "results"
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    metrics = metrics_to_json(
        module.last_results["test"], module.evaluation.tiou_thresholds, module.class_names
    )
    metrics["weights"] = weights
    metrics_file = out / f"{name}_metrics.json"
    with writing(metrics_file):
        metrics_file.write_text(json.dumps(metrics, indent=2))
    log.info(
        "%s average mAP %.4f (%s weights) written to %s",
        name,
        metrics["average_mAP"],
        weights,
        metrics_file,
    )
