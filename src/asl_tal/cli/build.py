"""What a command builds from its Hydra config: the config's values checked before any
work (:func:`check_run_config`), then the data module, the LightningModule, the loggers,
the callbacks and the trainer."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import lightning as L
import torch
from hydra.utils import get_class, get_object, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

import asl_tal.conf  # noqa: F401  (registers the config resolvers)
from asl_tal.checkpoint_io import AtomicCheckpointIO
from asl_tal.checkpoints import stored_dataset
from asl_tal.config_blocks import (
    FINITE_POSITIVE,
    HYDRA_KEYS,
    NON_NEGATIVE,
    SEED,
    ConfigValueError,
    check_settings,
    check_values,
    from_target,
    target_of,
)
from asl_tal.data.datamodules import TALDataModule
from asl_tal.lit_module import ASLLitModule
from asl_tal.metrics.protocol import EvaluationSettings
from asl_tal.models.network import required_multiple
from asl_tal.objective.settings import MODEL_BLOCKS
from asl_tal.outputs import writing
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.run_log import quiet_dependencies
from asl_tal.tracking import is_wandb_logger, wandb_logger_config

log = logging.getLogger("asl_tal")


# the EMA copy is deliberately kept in eval mode while training
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")


# a checkpoint folder that holds files is the one being resumed (check_fresh_run_dir refuses
# any other)
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


# The blocks of ours that no `_target_` names, with what each feeds (a settings dataclass, or
# a constructor and the arguments that the code supplies); a `_target_` block of ours feeds
# what it names (asl_tal.config_blocks.target_of).
CONFIG_BLOCKS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    **{f"model.{name}": feeds for name, feeds in MODEL_BLOCKS.items()},
    "postprocess": (PostprocessConfig, ()),
    "evaluation": (EvaluationSettings, ()),
}


# the arguments a schedule (``scheduler._target_``) takes from the code, not the config
SCHEDULE_ARGUMENTS = ("optimizer", "steps_per_epoch")


@dataclass(frozen=True)
class OptimizerKeys:
    """The keys of the ``optimizer`` block (a torch optimizer's, which takes others too)
    that are checked before a run."""

    lr: Annotated[float, FINITE_POSITIVE]
    weight_decay: Annotated[float, NON_NEGATIVE]


@dataclass(frozen=True)
class RunKeys:
    """The entry points' own keys that are checked before a run."""

    seed: Annotated[int, SEED]


def check_run_config(cfg: DictConfig, training: bool) -> None:
    """The values an entry point reads, checked before any data is read or file written
    (:mod:`asl_tal.config_blocks`): ``postprocess``, ``evaluation``, the trainer's accelerator,
    and for training also ``seed``, ``optimizer``, ``scheduler`` and the callbacks of ours
    (a callback set to null is left out). The model and dataset blocks have checks of their
    own (``check_model_config``, :meth:`TALDataModule.from_config`).

    Raises:
        ConfigValueError: one line naming the key and what it takes.
    """
    for where in ("postprocess", "evaluation"):
        target, supplied = CONFIG_BLOCKS[where]
        check_settings(target, OmegaConf.to_container(cfg[where], resolve=True), where, supplied)
    check_accelerator(OmegaConf.to_container(cfg.trainer, resolve=True))
    if not training:
        return
    check_values({"seed": cfg.seed}, "", RunKeys)
    check_values(_settings_only(cfg.optimizer), "optimizer", OptimizerKeys)
    schedule = get_object(cfg.scheduler._target_)
    check_settings(schedule, _settings_only(cfg.scheduler), "scheduler", SCHEDULE_ARGUMENTS)
    for name, callback in (cfg.callbacks or {}).items():
        target = None if callback is None else target_of(OmegaConf.to_container(callback))
        if target is not None:
            check_settings(target, _settings_only(callback), f"callbacks.{name}")


def _settings_only(node: DictConfig) -> dict:
    """A ``_target_`` block without the keys that Hydra reads."""
    block = OmegaConf.to_container(node, resolve=True)
    return {key: value for key, value in block.items() if key not in HYDRA_KEYS}


def check_accelerator(trainer: dict) -> None:
    """Refuse ``trainer.accelerator: gpu`` (or ``cuda``) on a machine where torch sees no
    CUDA GPU, before any work is done."""
    accelerator = str(trainer["accelerator"])
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigValueError(
            f"trainer.accelerator={accelerator}: torch sees no CUDA GPU on this machine; "
            "run on the CPU with trainer=cpu (or trainer.accelerator=cpu)"
        )


def build_datamodule(cfg: DictConfig, l3: int | None = None) -> TALDataModule:
    """The data module that ``cfg.dataset``'s ``_target_`` names, from the rest of the block
    (:meth:`TALDataModule.from_config`), padding batches for a network with ``l3``
    down-sampling blocks (default: ``cfg.model.network.l3``; a checkpoint's when evaluating
    one)."""
    l3 = cfg.model.network.l3 if l3 is None else l3
    block = OmegaConf.to_container(cfg.dataset, resolve=True)
    module_class = get_class(block.pop("_target_"))
    return module_class.from_config(block, required_multiple(l3))


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
        dataset=stored_dataset(cfg, {v.fps for v in datamodule.annotations("train").values()}),
    )


def build_loggers(cfg: DictConfig) -> list:
    """Instantiate ``cfg.logger``; a W&B logger's offline mode, name, group and checkpoint
    upload are settled first (:func:`asl_tal.tracking.wandb_logger_config`)."""
    loggers = []
    for name, logger_cfg in (cfg.logger or {}).items():
        logger_cfg = OmegaConf.to_container(logger_cfg, resolve=True)
        if is_wandb_logger(logger_cfg):
            logger_cfg = wandb_logger_config(logger_cfg, cfg)
        if "save_dir" in logger_cfg:  # a logger that writes files: its folder, checked
            save_dir = Path(logger_cfg["save_dir"])
            with writing(save_dir):
                save_dir.mkdir(parents=True, exist_ok=True)
        loggers.append(instantiate(logger_cfg))
        log.debug("logger %s ready", name)
    return loggers


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def choose_precision(precision: str, accelerator: str) -> tuple[str, str]:
    """``trainer.precision``, with ``auto`` settled for this machine, and why.

    ``auto`` is ``bf16-mixed`` where bf16 runs natively (a CUDA GPU with bf16, or a CPU
    with AVX512-BF16 / AMX-BF16) and ``32-true`` elsewhere: emulated bf16 on other CPUs is
    many times slower than float32. Any other value is returned as it is.
    """
    if precision != "auto":
        return precision, "as configured"
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU runs bf16 natively"
        return "32-true", "the GPU has no native bf16"
    native = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    if native:
        return "bf16-mixed", f"the CPU runs bf16 natively ({', '.join(native)})"
    return "32-true", "the CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag)"


def build_trainer(cfg: DictConfig, callbacks: bool = True) -> L.Trainer:
    """The Lightning Trainer of ``cfg.trainer`` with the configured callbacks and loggers.

    Without a logger there is no learning rate to monitor: that callback is left out. A
    callback set to null (``callbacks.last_checkpoint=null``) is left out too.
    ``trainer.precision: auto`` is settled by :func:`choose_precision` and logged. The
    dependencies' adverts and internal deprecations are filtered first
    (:func:`asl_tal.run_log.quiet_dependencies`). Checkpoints are written atomically and
    bounded when read (:class:`AtomicCheckpointIO`).
    """
    quiet_dependencies()
    loggers = build_loggers(cfg)
    configured = (cfg.callbacks or {}).items() if callbacks else []
    callback_list = [_callback(c, f"callbacks.{n}") for n, c in configured if c is not None]
    if not loggers:
        callback_list = [c for c in callback_list if not isinstance(c, LearningRateMonitor)]
    precision, reason = choose_precision(str(cfg.trainer.precision), str(cfg.trainer.accelerator))
    if cfg.trainer.precision == "auto":
        log.info("precision auto: %s (%s)", precision, reason)
    return instantiate(
        cfg.trainer,
        callbacks=callback_list,
        logger=loggers or False,
        precision=precision,
        plugins=[AtomicCheckpointIO()],
    )


def _callback(node: DictConfig, where: str) -> L.Callback:
    """A callback of ours from its block (:func:`asl_tal.config_blocks.from_target`), a
    third-party one (Lightning's) by Hydra's ``instantiate``."""
    block = OmegaConf.to_container(node, resolve=True)
    return from_target(block, where) if target_of(block) is not None else instantiate(node)
