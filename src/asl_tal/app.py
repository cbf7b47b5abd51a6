"""What the entry points (train / eval / predict) share: building the data module, the
LightningModule, loggers, callbacks and trainer from a Hydra config, writing results files,
and turning user errors into one readable message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import netrc
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

import asl_tal.conf  # noqa: F401  (registers the config resolvers)
from asl_tal.data.annotations import AnnotationError
from asl_tal.data.datamodules import TALDataModule
from asl_tal.data.features import FeatureError
from asl_tal.lit_module import ASLLitModule, NonFiniteLossError
from asl_tal.models.network import required_multiple
from asl_tal.submission import write_activitynet_results

log = logging.getLogger("asl_tal")

# the EMA copy is deliberately kept in eval mode while training
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")


class UserInputError(ValueError):
    """A command-line input that cannot work (the message says why and what to do)."""


class CheckpointMismatchError(UserInputError):
    """A checkpoint does not fit the current dataset configuration."""


# DatasetNotFoundError is a FileNotFoundError, CheckpointMismatchError a UserInputError
USER_ERRORS = (UserInputError, AnnotationError, FeatureError, FileNotFoundError, NonFiniteLossError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report a user-facing error as one message and exit with status 2 (no traceback)."""
    try:
        yield
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def run_dir() -> Path:
    """The Hydra run directory of this job (the current directory outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


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
        Path(logger_cfg.get("save_dir", ".")).mkdir(parents=True, exist_ok=True)
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


# Keys that checkpoints written before the config tree was split into blocks (network,
# points, sensitivity, ascl, loss, ema) leave out, with the values the code then used.
LEGACY_NETWORK_KEYS = (
    "input_dim", "stream_dims", "d_emb", "n_heads", "l1", "l2", "l3", "head_width",
    "t_c_alpha", "channel_attention", "attn_window", "attn_window_levels", "abs_pos_enc",
    "max_seq_len", "dropout", "path_drop", "prior_prob",
)  # fmt: skip
LEGACY_DEFAULTS = {
    "network": {"head_layers": 3},
    "sensitivity": {"normalize": "none", "evaluator_tile_len": 16},
    "ascl": {"tau": None, "window_ratio": 0.2},
    "postprocess": {"topk_per_level": True},
}


def upgrade_hparams(hparams: dict) -> dict:
    """The hyper-parameters of a checkpoint in today's layout (older layouts converted)."""
    model = dict(hparams["model"])
    if "network" in model:
        return hparams
    network = {key: model.pop(key) for key in LEGACY_NETWORK_KEYS}
    sensitivity = dict(model["sensitivity"])
    sensitivity.setdefault("evaluator_layers", model.pop("l4"))
    upgraded = {
        "network": {**LEGACY_DEFAULTS["network"], **network},
        "points": {"regression_ranges": model.get("regression_ranges")},
        "sensitivity": {**LEGACY_DEFAULTS["sensitivity"], **sensitivity},
        "ascl": {**LEGACY_DEFAULTS["ascl"], **model["ascl"]},
        "loss": dict(model["loss"]),
        "ema": dict(model["ema"]),
        "compile": bool(model.get("compile", False)),
    }
    return {
        **hparams,
        "model": upgraded,
        "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, **hparams["optimizer"]},
        "scheduler": {
            "_target_": "asl_tal.optim.warmup_cosine",
            "_partial_": True,
            **hparams["scheduler"],
        },
        "postprocess": {**LEGACY_DEFAULTS["postprocess"], **hparams["postprocess"]},
    }


def check_trained_on(
    hparams: dict,
    path: str | Path,
    class_names: list[str] | None = None,
    input_dim: int | list[int] | None = None,
) -> None:
    """Raise :class:`CheckpointMismatchError` unless a checkpoint with ``hparams`` was trained
    on these classes and this feature width (None = not checked)."""
    trained_classes = list(hparams["class_names"])
    if class_names is not None and trained_classes != list(class_names):
        raise CheckpointMismatchError(
            f"{path}: trained on {len(trained_classes)} classes ({trained_classes[:3]}...), the "
            f"current dataset has {len(class_names)} ({list(class_names)[:3]}...)"
        )
    trained_dim = hparams["model"]["network"]["input_dim"]
    if input_dim is not None and trained_dim != input_dim:
        raise CheckpointMismatchError(
            f"{path}: trained on features of width {trained_dim}, the current dataset has "
            f"dataset.input_dim={input_dim}"
        )


def load_checkpoint(
    path: str | Path,
    class_names: list[str] | None = None,
    input_dim: int | list[int] | None = None,
    postprocess: dict | None = None,
    evaluation: dict | None = None,
) -> ASLLitModule:
    """Load an asl-tal checkpoint, checking its classes and feature width where given.

    ``postprocess`` / ``evaluation`` replace the checkpoint's settings (the module's saved
    hyper-parameters then say what it runs with).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hparams = ckpt.get("hyper_parameters")
    if not hparams or "class_names" not in hparams:
        raise CheckpointMismatchError(f"{path}: not an asl-tal checkpoint (no hyper_parameters)")
    hparams = upgrade_hparams(dict(hparams))
    check_trained_on(hparams, path, class_names, input_dim)
    if postprocess is not None:
        hparams["postprocess"] = postprocess
    if evaluation is not None:
        hparams["evaluation"] = evaluation
    module = ASLLitModule(**hparams)
    module.load_state_dict(ckpt["state_dict"])
    return module


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
    out.mkdir(parents=True, exist_ok=True)
    write_activitynet_results(
        out / f"{subset}_detections.json", dict(detections), datamodule.class_map
    )
    metrics = metrics_to_json(
        module.last_results["test"], list(module.evaluation["tiou_thresholds"]), module.class_names
    )
    (out / f"{subset}_metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("test average mAP %.4f; results written to %s", metrics["average_mAP"], out)
