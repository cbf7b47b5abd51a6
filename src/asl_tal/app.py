"""What the entry points (train / eval / predict) share: building the data module, the
LightningModule, loggers, callbacks and trainer from a Hydra config, the run directory,
writing results files, and turning user errors into one readable message. Reading and
checking checkpoints is :mod:`asl_tal.checkpoints`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import netrc
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

import asl_tal.conf  # noqa: F401  (registers the config resolvers)
from asl_tal.data.annotations import AnnotationError
from asl_tal.data.datamodules import TALDataModule
from asl_tal.data.features import FeatureError
from asl_tal.errors import UserInputError
from asl_tal.lit_module import ASLLitModule, NonFiniteLossError
from asl_tal.models.network import required_multiple
from asl_tal.settings import ConfigValueError
from asl_tal.submission import write_activitynet_results

log = logging.getLogger("asl_tal")

# the EMA copy is deliberately kept in eval mode while training
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")


class OutputWriteError(OSError):
    """A result file or folder of the run cannot be written (read-only, full, blocked)."""


# DatasetNotFoundError is a FileNotFoundError; the checkpoint errors are UserInputErrors
USER_ERRORS = (
    UserInputError,
    AnnotationError,
    FeatureError,
    FileNotFoundError,
    NonFiniteLossError,
    OutputWriteError,
    ConfigValueError,
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report a user-facing error as one message and exit with status 2 (no traceback)."""
    try:
        yield
    except (*USER_ERRORS, InstantiationException) as err:
        # instantiate() wraps what a constructor raises (the data module's config check)
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if not isinstance(cause, USER_ERRORS):
            raise
        print(f"error: {one_line_message(cause)}", file=sys.stderr)
        raise SystemExit(2) from None


def one_line_message(err: BaseException) -> str:
    """``err``'s message; for an error re-raised from a DataLoader worker (whose message
    embeds the worker's traceback), the original message only."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]  # "FeatureError: <the original message>"
    return last.split(": ", 1)[1] if ": " in last else last


def run_dir() -> Path:
    """The Hydra run directory of this job (the current directory outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into one :class:`OutputWriteError` line
    naming the path (read-only run directory, disk full, a file where a folder belongs)."""
    try:
        yield
    except OSError as err:
        if isinstance(err, OutputWriteError):
            raise
        reason = err.strerror or str(err) or type(err).__name__
        raise OutputWriteError(
            f"cannot write {path}: {reason} (give a writable run directory with hydra.run.dir=...)"
        ) from err


def check_writable(directory: Path) -> None:
    """Create ``directory`` if needed and check that a file can be written into it."""
    with writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass


def prepare_results_dir(directory: Path) -> Path:
    """``directory/results``, created and checked writable before any work is done."""
    out = directory / "results"
    check_writable(out)
    return out


def check_fresh_run_dir(directory: Path, ckpt_path: Path | None) -> None:
    """Refuse to train into ``directory`` when it already holds checkpoints (a new run would
    overwrite them), unless ``ckpt_path`` lies inside it (resuming that run)."""
    existing = sorted((directory / "checkpoints").glob("*.ckpt"))
    if not existing:
        return
    if ckpt_path is not None and ckpt_path.resolve().is_relative_to(directory.resolve()):
        return
    names = ", ".join(p.name for p in existing)
    raise UserInputError(
        f"run directory {directory} already holds checkpoints ({names}) that this run would "
        f"overwrite: choose another hydra.run.dir, or resume it with "
        f"ckpt_path={directory / 'checkpoints' / existing[-1].name}"
    )


def build_datamodule(cfg: DictConfig, l3: int | None = None) -> TALDataModule:
    """Instantiate ``cfg.dataset``, padding batches for a network with ``l3`` down-sampling
    blocks (default: ``cfg.model.network.l3``; a checkpoint's when evaluating one)."""
    l3 = cfg.model.network.l3 if l3 is None else l3
    return instantiate(
        OmegaConf.to_container(cfg.dataset, resolve=True),
        pad_multiple=required_multiple(l3),
        _convert_="all",
    )


def build_module(cfg: DictConfig, datamodule: TALDataModule) -> ASLLitModule:
    """The LightningModule for ``cfg`` with the class map and counts of ``datamodule``."""
    class_agnostic = datamodule.class_agnostic
    return ASLLitModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        postprocess=OmegaConf.to_container(cfg.postprocess, resolve=True),
        evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),
        class_names=list(datamodule.class_map.names),
        class_counts=None if class_agnostic else [int(c) for c in datamodule.train_class_counts],
        num_model_classes=datamodule.num_model_classes,
        seed=int(cfg.seed),
    )


def wandb_api_key_available() -> bool:
    """True when W&B can log online: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_loggers(cfg: DictConfig) -> list:
    """Instantiate ``cfg.logger``; W&B's ``offline: auto`` becomes offline without an API key."""
    loggers = []
    for name, logger_cfg in (cfg.get("logger") or {}).items():
        logger_cfg = OmegaConf.to_container(logger_cfg, resolve=True)
        if logger_cfg.get("offline") == "auto":
            logger_cfg["offline"] = not wandb_api_key_available()
            if logger_cfg["offline"]:
                log.info("W&B: no API key, logging offline (upload later with `wandb sync`)")
        save_dir = Path(logger_cfg.get("save_dir", "."))
        with writing(save_dir):
            save_dir.mkdir(parents=True, exist_ok=True)
        loggers.append(instantiate(logger_cfg))
        log.debug("logger %s ready", name)
    return loggers


def build_trainer(cfg: DictConfig, callbacks: bool = True) -> L.Trainer:
    """The Lightning Trainer of ``cfg.trainer`` with the configured callbacks and loggers.

    Without a logger there is no learning rate to monitor: that callback is left out.
    """
    loggers = build_loggers(cfg)
    callback_list = (
        [instantiate(c) for c in (cfg.get("callbacks") or {}).values()] if callbacks else []
    )
    if not loggers:
        callback_list = [c for c in callback_list if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callback_list, logger=loggers or False)


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
) -> None:
    """Write ``results/<subset>_metrics.json`` (offline-scorer keys) and
    ``results/<subset>_detections.json`` (ActivityNet results format) on rank 0.

    Each rank holds the detections of its share of the videos; they are gathered first. A
    video that a distributed sampler repeated keeps one copy.
    """
    detections = module.detections
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, detections)
        detections = [item for part in gathered for item in part]
    if not trainer.is_global_zero:
        return
    out = directory / "results"
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    detections_file = out / f"{subset}_detections.json"
    with writing(detections_file):
        write_activitynet_results(detections_file, dict(detections), datamodule.class_map)
    metrics = metrics_to_json(
        module.last_results["test"], list(module.evaluation["tiou_thresholds"]), module.class_names
    )
    metrics_file = out / f"{subset}_metrics.json"
    with writing(metrics_file):
        metrics_file.write_text(json.dumps(metrics, indent=2))
    log.info("test average mAP %.4f; results written to %s", metrics["average_mAP"], out)
