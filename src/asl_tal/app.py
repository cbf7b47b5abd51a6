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
import pickle
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
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
from asl_tal.lit_module import ASLLitModule, NonFiniteLossError
from asl_tal.models.network import required_multiple
from asl_tal.settings import ConfigValueError
from asl_tal.submission import write_activitynet_results

log = logging.getLogger("asl_tal")

# the EMA copy is deliberately kept in eval mode while training
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")


class UserInputError(ValueError):
    """A command-line input that cannot work (the message says why and what to do)."""


class CheckpointMismatchError(UserInputError):
    """A checkpoint does not fit the current dataset configuration."""


class CheckpointReadError(UserInputError):
    """A checkpoint file cannot be read (truncated, empty, not a torch file, unreadable)."""


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

# What torch.load raises on a file that is not an intact checkpoint, found by loading
# truncated, empty, text, random and bit-flipped files with weights_only=True: RuntimeError
# (zip reader: "failed finding central directory", record size mismatches), UnpicklingError
# (invalid load key, a global the weights-only unpickler refuses), EOFError (empty or cut
# pickle), ValueError (UnicodeDecodeError of a damaged string), LookupError (KeyError /
# IndexError of the legacy format's tables), AttributeError and TypeError (damaged records
# rebuilt into the wrong object), OSError (EINVAL on a cut archive, permissions).
CHECKPOINT_READ_ERRORS = (
    RuntimeError,
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    LookupError,
    AttributeError,
    TypeError,
    OSError,
)

# Generous bounds on the architecture a checkpoint's hyper-parameters describe, checked
# before a module is built from them: the largest published rows use d_emb 512, 8 heads,
# l1..l4 up to 2/3/8/2 and 4096-wide features. A checkpoint outside them is refused instead
# of being trusted to allocate memory. (min, max) per key of the ``model`` block.
MODEL_LIMITS = {
    "network.d_emb": (1, 8192),
    "network.head_width": (1, 8192),
    "network.n_heads": (1, 128),
    "network.l1": (0, 32),
    "network.l2": (0, 32),
    "network.l3": (0, 12),
    "network.head_layers": (1, 32),
    "network.max_seq_len": (1, 1 << 20),
    "sensitivity.evaluator_layers": (0, 32),  # l4
    "ascl.proj_dim": (1, 8192),
}
MAX_INPUT_DIM = 65536  # per feature stream
MAX_STREAMS = 16
MAX_CLASSES = 100_000

# `ckpt_path` values that are not local paths: a URL or fsspec protocol ("http://",
# "s3://", "file://", "simplecache::..."), a "data:" URL, Lightning's "registry:" names.
# A one-letter scheme is a Windows drive ("C:\...") and stays a path.
_REMOTE_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:|::")


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
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


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


def local_checkpoint_path(value: str | Path | None) -> Path:
    """``ckpt_path`` as an existing local file; refuses a missing value, a URL or remote
    file system (which Lightning and fsspec would fetch), a folder and a missing file."""
    if value is None or str(value).strip() == "":
        raise UserInputError(
            "ckpt_path=... is required: the checkpoint to load (e.g. "
            "ckpt_path=outputs/train/<dataset>/<time>/checkpoints/best.ckpt)"
        )
    text = str(value)
    if _REMOTE_PATH.search(text):
        raise UserInputError(
            f"ckpt_path={text}: only local checkpoint files are read (no URLs or remote file "
            "systems); download it, check where it comes from, and pass its local path "
            "(a local name with a colon: prefix it with ./)"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        raise UserInputError(f"ckpt_path={text} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return path


def _read_failure(err: BaseException) -> str:
    """Why ``torch.load`` failed, in one short clause (torch's own text can run to a page,
    and for a refused pickle it suggests the unsafe ``weights_only=False``)."""
    if isinstance(err, OSError) and err.strerror:
        return f"cannot read the file ({err.strerror})"
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        # torch's paragraphs: the weights_only advice, the reason, a pointer to its docs
        boiler = ("Weights only load failed", "Check the documentation", "Please file an issue")
        reasons = [
            " ".join(part.replace("WeightsUnpickler error:", "").split())
            for part in text.split("\n\n")
            if part.strip() and not part.strip().startswith(boiler)
        ]
        why = next((r for r in reasons if r), "unsupported content")
        return (
            "refused: not a torch file, or one holding Python objects beyond tensors and "
            f"plain data, which are never unpickled here (weights_only=True; {why[:120]})"
        )
    detail = " ".join(text.split()).split(". ")[0][:120]
    detail = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
    return f"not a readable checkpoint: truncated, empty or not a torch file ({detail})"


def read_checkpoint(path: str | Path | None) -> dict:
    """The contents of a local asl-tal checkpoint, read with ``weights_only=True`` (no code
    in the file runs): a dict with ``hyper_parameters`` (``class_names`` inside) and a
    ``state_dict`` of tensors. Every way of failing is one user error naming the file."""
    path = local_checkpoint_path(path)
    try:
        with warnings.catch_warnings():
            # protocol-4 pickles (Python's default) load fine; torch warns about each one
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except CHECKPOINT_READ_ERRORS as err:
        raise CheckpointReadError(f"{path}: {_read_failure(err)}") from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "class_names" not in hparams:
        raise CheckpointMismatchError(f"{path}: not an asl-tal checkpoint (no hyper_parameters)")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointMismatchError(f"{path}: not an asl-tal checkpoint (no state_dict)")
    return ckpt


def _int_setting(value, where: str, path: Path, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointMismatchError(f"{path}: {where}={value!r} is not an integer")
    if not low <= value <= high:
        raise CheckpointMismatchError(
            f"{path}: {where}={value} is outside the supported range {low}..{high} "
            "(asl_tal.app.MODEL_LIMITS); refusing to build a model from it"
        )


def check_model_bounds(hparams: Mapping, path: Path) -> None:
    """Raise :class:`CheckpointMismatchError` unless the architecture in ``hparams`` (today's
    layout) lies within :data:`MODEL_LIMITS`, :data:`MAX_INPUT_DIM` and :data:`MAX_CLASSES`."""
    model = hparams["model"]
    for key, (low, high) in MODEL_LIMITS.items():
        block, name = key.split(".")
        value = (model.get(block) or {}).get(name)
        if name == "proj_dim" and not (model.get("ascl") or {}).get("weight"):
            continue  # ASCL off: its projection is not built
        _int_setting(value, f"model.{key}", path, low, high)
    input_dim = model["network"].get("input_dim")
    dims = input_dim if isinstance(input_dim, list | tuple) else [input_dim]
    _int_setting(len(dims), "the number of feature streams", path, 1, MAX_STREAMS)
    for dim in dims:
        _int_setting(dim, "model.network.input_dim", path, 1, MAX_INPUT_DIM)
    classes = hparams["class_names"]
    if not isinstance(classes, list | tuple):
        raise CheckpointMismatchError(f"{path}: class_names is not a list")
    _int_setting(len(classes), "the number of classes", path, 1, MAX_CLASSES)
    num_model_classes = hparams.get("num_model_classes")
    if num_model_classes is not None:
        _int_setting(num_model_classes, "num_model_classes", path, 1, len(classes))


def check_state_dict(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], path: Path, what: str
) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` has exactly the tensor names
    and shapes of ``expected`` (a model's state dict, on the meta device or real) and each
    of its tensors is backed by as many bytes as its shape claims.

    ``what`` says where ``expected`` comes from, for the message.
    """
    implied = sum(t.numel() for t in expected.values())
    held = sum(t.numel() for t in state.values())
    counts = f"{what} has {implied:,} parameter values, the checkpoint's state dict {held:,}"
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointMismatchError(f"{path}: {counts}; first difference: {name} missing")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointMismatchError(
                f"{path}: {counts}; first difference: {name} has shape "
                f"{tuple(state[name].shape)} in the checkpoint, {tuple(tensor.shape)} in {what}"
            )
    for name in state:
        if name not in expected:
            raise CheckpointMismatchError(
                f"{path}: {counts}; first difference: {name} is not a tensor of {what}"
            )
    for name, tensor in state.items():
        # a crafted tensor can claim a large shape over a tiny storage (zero strides); the
        # model would then be built at the full size from a small file
        if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
            raise CheckpointMismatchError(
                f"{path}: state dict tensor {name} claims {tensor.numel():,} values over "
                f"{tensor.untyped_storage().nbytes():,} bytes of data (a crafted checkpoint)"
            )


def load_state_dict_checked(module: torch.nn.Module, state: Mapping, path: Path) -> None:
    """``module.load_state_dict(state)``, its shape/key errors as one line naming ``path``."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), "")
        raise CheckpointMismatchError(
            f"{path}: the weights do not fit the model ({first or str(err).splitlines()[0]})"
        ) from None


def load_checkpoint(
    path: str | Path | None,
    class_names: list[str] | None = None,
    input_dim: int | list[int] | None = None,
    postprocess: dict | None = None,
    evaluation: dict | None = None,
) -> ASLLitModule:
    """Load an asl-tal checkpoint, checking its classes and feature width where given.

    ``postprocess`` / ``evaluation`` replace the checkpoint's settings (the module's saved
    hyper-parameters then say what it runs with).

    Nothing in the file is trusted: it is read with ``weights_only=True``, its architecture
    must lie within :data:`MODEL_LIMITS`, and the model it describes is first built on the
    meta device (no memory) to check that its parameters are exactly the state dict's.
    """
    ckpt = read_checkpoint(path)
    path = Path(str(path)).expanduser()
    try:
        hparams = upgrade_hparams(dict(ckpt["hyper_parameters"]))
        check_model_bounds(hparams, path)
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointMismatchError(
            f"{path}: hyper-parameters in no asl-tal layout ({type(err).__name__}: {err})"
        ) from None
    check_trained_on(hparams, path, class_names, input_dim)
    if postprocess is not None:
        hparams["postprocess"] = postprocess
    if evaluation is not None:
        hparams["evaluation"] = evaluation
    try:
        with torch.device("meta"):
            skeleton = ASLLitModule(**hparams)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointMismatchError(
            f"{path}: its hyper-parameters do not build an asl-tal model ({err})"
        ) from None
    check_state_dict(skeleton.state_dict(), ckpt["state_dict"], path, "the model they describe")
    del skeleton
    module = ASLLitModule(**hparams)
    load_state_dict_checked(module, ckpt["state_dict"], path)
    return module


def check_resume_checkpoint(
    path: Path, ckpt: dict, module: ASLLitModule, datamodule: TALDataModule
) -> None:
    """Refuse (one line) the checkpoint ``ckpt`` (:func:`read_checkpoint` of ``path``) to
    resume ``module``'s training from when it was trained on other classes or feature
    width, or when its weights do not fit this config's model."""
    try:
        hparams = upgrade_hparams(dict(ckpt["hyper_parameters"]))
        check_trained_on(hparams, path, list(datamodule.class_map.names), datamodule.cfg.input_dim)
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointMismatchError(
            f"{path}: hyper-parameters in no asl-tal layout ({type(err).__name__}: {err})"
        ) from None
    check_state_dict(module.state_dict(), ckpt["state_dict"], path, "the model of this config")


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
