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
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class, get_object, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

import asl_tal.conf  # noqa: F401  (registers the config resolvers)
from asl_tal.checkpoint_io import AtomicCheckpointIO
from asl_tal.checkpoints import stored_dataset
from asl_tal.data.annotations import AnnotationError
from asl_tal.data.datamodules import TALDataModule
from asl_tal.data.features import FeatureError
from asl_tal.errors import OutputWriteError, UserInputError
from asl_tal.lit_module import ASLLitModule, NonFiniteLossError
from asl_tal.metrics.protocol import EvaluationSettings
from asl_tal.models.network import required_multiple
from asl_tal.objective.settings import MODEL_BLOCKS
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.run_log import quiet_dependencies
from asl_tal.settings import (
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
from asl_tal.submission import write_activitynet_results
from asl_tal.sweeps import SweepJobError
from asl_tal.tracking import is_wandb_logger, wandb_logger_config

log = logging.getLogger("asl_tal")

# the EMA copy is deliberately kept in eval mode while training
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# a checkpoint folder that holds files is the one being resumed (check_fresh_run_dir refuses
# any other)
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


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
    """Report a user-facing error as one message and exit with status 2 (no traceback).

    In a job of a multirun the message is logged as one line and raised as a
    :class:`~asl_tal.sweeps.SweepJobError` instead: ``SystemExit`` would pass Hydra's job
    error handling and end the whole sweep, where this records the job as failed.
    """
    try:
        yield
    except (*USER_ERRORS, InstantiationException) as err:
        # instantiate() wraps what a third-party constructor raises (a logger's, say)
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if not isinstance(cause, USER_ERRORS):
            raise
        message = one_line_message(cause)
        if in_multirun():
            log.error("job failed: %s", message)
            raise SweepJobError(message) from None
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``, a sweeper or a parallel launcher)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_line_message(err: BaseException) -> str:
    """``err``'s message; for an error re-raised from a DataLoader worker (whose message
    embeds the worker's traceback), the original message only."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]  # "FeatureError: <the original message>"
    return last.split(": ", 1)[1] if ": " in last else last


def command_line_overrides() -> list[str]:
    """The overrides this Hydra job was given on the command line ([] outside Hydra)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def run_dir() -> Path:
    """The Hydra run directory of this job (the current directory outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


RUN_DIR_HINT = "give a writable run directory with hydra.run.dir=..."


@contextlib.contextmanager
def writing(path: str | Path, hint: str = RUN_DIR_HINT) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into one :class:`OutputWriteError` line
    naming the path (read-only run directory, disk full, a file where a folder belongs),
    ending with ``hint``: what to pass instead."""
    try:
        yield
    except OSError as err:
        if isinstance(err, OutputWriteError):
            raise
        reason = err.strerror or str(err) or type(err).__name__
        raise OutputWriteError(f"cannot write {path}: {reason} ({hint})") from err


def check_writable(directory: Path, hint: str = RUN_DIR_HINT) -> None:
    """Create ``directory`` if needed and check that a file can be written into it."""
    with writing(directory, hint):
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass


def prepare_results_dir(directory: Path) -> Path:
    """``directory/results``, created and checked writable before any work is done."""
    out = directory / "results"
    check_writable(out)
    return out


class WritableOutputDir(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the run directory, or a multirun's
    sweep directory, is created and checked writable before Hydra writes its files there;
    one that cannot be is one ``error:`` line and exit status 2, not Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.sweep.dir))

    @staticmethod
    def _check(directory: Path) -> None:
        # before any job: the whole run (or sweep) stops, also in a multirun
        try:
            check_writable(directory)
        except OutputWriteError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None


# The blocks of ours that no `_target_` names, with what each feeds (a settings dataclass, or
# a constructor and the arguments that the code supplies); a `_target_` block of ours feeds
# what it names (asl_tal.settings.target_of).
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
    (:mod:`asl_tal.settings`): ``postprocess``, ``evaluation``, the trainer's accelerator,
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
    """A callback of ours from its block (:func:`asl_tal.settings.from_target`), a
    third-party one (Lightning's) by Hydra's ``instantiate``."""
    block = OmegaConf.to_container(node, resolve=True)
    return from_target(block, where) if target_of(block) is not None else instantiate(node)


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
