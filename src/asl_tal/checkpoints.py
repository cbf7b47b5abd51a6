"""Reading asl-tal checkpoints safely: local files only, the archive's unpacked size bounded
before ``torch.load`` reads it, ``weights_only=True``, the hyper-parameters upgraded from
earlier layouts, bounded and checked against the state dict on the meta device before anything
real is allocated.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from asl_tal.config_blocks import trusted_bounds
from asl_tal.data.datamodules import TALDataModule
from asl_tal.errors import UserInputError
from asl_tal.lit_module import ASLLitModule
from asl_tal.models.points import doubling_ranges
from asl_tal.objective.settings import MODEL_BLOCKS


class CheckpointMismatchError(UserInputError):
    """A checkpoint does not fit the current dataset configuration."""


class CheckpointReadError(UserInputError):
    """A checkpoint file cannot be read (truncated, empty, not a torch file, unreadable)."""


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
# before a module is built from them, so a checkpoint is not trusted to allocate memory: the
# sizes each setting declares (``Constraint.up_to`` on the fields of the model's blocks,
# asl_tal.config_blocks.trusted_bounds), and these two, which are no config key.
MAX_STREAMS = 16
MAX_CLASSES = 100_000

# torch.save writes a zip archive of stored (uncompressed) entries, which unpack to about the
# file's size; the zip reader of torch.load also inflates compressed entries, to the sizes the
# archive's directory claims (a 1.4 MB file can hold a 1 GiB tensor of zeros). An archive whose
# entries claim more than this many times the file's size is refused before torch.load.
MAX_INFLATION = 4

# `ckpt_path` values that are not local paths: a URL or fsspec protocol ("http://",
# "s3://", "file://", "simplecache::..."), a "data:" URL, Lightning's "registry:" names.
# A one-letter scheme is a Windows drive ("C:\...") and stays a path.
_REMOTE_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:|::")
# a dataset name that can name a run folder
_FOLDER_NAME = re.compile(r"\w[\w.-]*")


# The flat ``model`` block of the layout before the config tree was split into blocks
# (network, points, sensitivity, ascl, loss, ema): these keys moved into ``network``.
FLAT_NETWORK_KEYS = (
    "input_dim", "stream_dims", "d_emb", "n_heads", "l1", "l2", "l3", "head_width",
    "t_c_alpha", "channel_attention", "attn_window", "attn_window_levels", "abs_pos_enc",
    "max_seq_len", "dropout", "path_drop", "prior_prob",
)  # fmt: skip


def _by_ascl_mode(topk: Any, windows: Any) -> Callable[[Mapping], Any]:
    """An ASCL value that a checkpoint took from its ``model.ascl.mode``."""
    return lambda hparams: topk if hparams["model"]["ascl"]["mode"] == "topk" else windows


def _doubling_ranges(hparams: Mapping) -> list[list[float]]:
    return doubling_ranges(hparams["model"]["network"]["l3"] + 1)


# The one migration table: for a key of today's layout, the value a checkpoint was trained
# with where it lacks the key ("missing": written before the key existed) or holds null in
# it ("null": written when null meant the code's own value). A callable takes the
# hyper-parameters and returns the value. Rows apply in order (a missing tau is the null of
# the earliest layout, which the next row settles); a row under a block the checkpoint does
# not hold (its dataset block is None) is skipped.
MIGRATIONS: tuple[tuple[str, str, Any], ...] = (
    ("dataset", "missing", None),  # no stored dataset block: eval and predict use the config's
    ("optimizer._target_", "missing", "torch.optim.AdamW"),
    ("optimizer._partial_", "missing", True),
    ("scheduler._target_", "missing", "asl_tal.optim.warmup_cosine"),
    ("scheduler._partial_", "missing", True),
    ("postprocess.topk_per_level", "missing", True),
    ("model.compile", "missing", False),
    ("model.network.head_layers", "missing", 3),
    ("model.network.channel_pool", "missing", "sum"),
    ("model.network.channel_drop_path", "missing", False),
    ("model.network.offset_activation", "missing", "relu"),
    ("model.points.regression_ranges", "missing", None),
    ("model.points.regression_ranges", "null", _doubling_ranges),
    ("model.sensitivity.normalize", "missing", "none"),
    ("model.sensitivity.evaluator_tile_len", "missing", 16),
    ("model.sensitivity.evaluator_width", "missing", None),
    ("model.sensitivity.weight_normalize", "missing", "none"),
    ("model.sensitivity.gaussian_lr_scale", "missing", 1.0),
    ("model.sensitivity.loc_sigma_init", "missing", 1.0),
    ("model.ascl.window_ratio", "missing", 0.2),
    ("model.ascl.tau", "missing", None),
    ("model.ascl.tau", "null", _by_ascl_mode(0.1, 0.07)),
    ("model.ascl.memory_size", "missing", 0),
    ("model.ascl.memory_size", "null", _by_ascl_mode(512, 0)),
)

# the blocks eval and predict take from the checkpoint: the data it was trained on, how it
# decodes detections and how it was scored
CHECKPOINT_BLOCKS = ("dataset", "postprocess", "evaluation")


def upgrade_hparams(hparams: dict) -> dict:
    """The hyper-parameters of a checkpoint in today's layout: a flat ``model`` block split
    into today's blocks, then every row of :data:`MIGRATIONS` applied (a copy; ``hparams``
    stays as it is)."""
    hparams = copy.deepcopy(hparams)
    if "network" not in hparams["model"]:
        hparams["model"] = _split_flat_model(hparams["model"])
    for key, when, value in MIGRATIONS:
        *parents, name = key.split(".")
        block = hparams
        for parent in parents:
            block = block[parent] if isinstance(block, dict) else None
        if not isinstance(block, dict):
            continue
        if (when == "missing" and name not in block) or (
            when == "null" and name in block and block[name] is None
        ):
            block[name] = value(hparams) if callable(value) else value
    return hparams


def _split_flat_model(model: dict) -> dict:
    """The flat ``model`` block of the earliest layout as today's blocks, with the keys it
    holds (:data:`MIGRATIONS` adds the others)."""
    blocks = {
        "network": {key: model[key] for key in FLAT_NETWORK_KEYS},
        "points": {key: model[key] for key in ("regression_ranges",) if key in model},
        "sensitivity": {"evaluator_layers": model["l4"], **model["sensitivity"]},
        "ascl": model["ascl"],
        "loss": model["loss"],
        "ema": model["ema"],
    }
    return {**blocks, **({"compile": model["compile"]} if "compile" in model else {})}


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
            f"current dataset has {len(class_names)} ({list(class_names)[:3]}...); give the "
            "annotations it was trained on (dataset.json_file=..., or the dataset=<name> it "
            "was trained with)"
        )
    trained_dim = hparams["model"]["network"]["input_dim"]
    if input_dim is not None and trained_dim != input_dim:
        raise CheckpointMismatchError(
            f"{path}: trained on features of width {trained_dim}, the current dataset has "
            f"dataset.input_dim={input_dim}; pass dataset.input_dim={_as_override(trained_dim)} "
            f"with features of that width"
        )


def _as_override(value: int | list[int]) -> str:
    """A feature width as a command-line value: ``2048`` or ``[1536,2304]``."""
    return f"[{','.join(map(str, value))}]" if isinstance(value, list | tuple) else str(value)


def stored_dataset(cfg: DictConfig, training_fps: set[float | None]) -> dict:
    """``cfg.dataset`` resolved, as a checkpoint stores it: ``root`` made absolute against the
    working directory, so eval and predict find the data from anywhere (the other paths are
    relative to ``root`` unless absolute).

    Where the config gives no frame rate (``fps`` and ``default_fps`` null: each video's from
    the annotation file) and every training video has the same one (``training_fps``), that
    one becomes ``default_fps``: predict, which has no annotation file, reads features at the
    rate the model was trained on; eval still takes each video's from the file.
    """
    block = OmegaConf.to_container(cfg.dataset, resolve=True)
    block["root"] = os.path.abspath(os.path.expanduser(block["root"]))
    no_rate = block["fps"] is None and block["default_fps"] is None
    if no_rate and len(training_fps) == 1 and None not in training_fps:
        (block["default_fps"],) = training_fps
    return block


def with_checkpoint_settings(
    cfg: DictConfig, hparams: Mapping, overrides: Sequence[str]
) -> DictConfig:
    """``cfg`` with each block of :data:`CHECKPOINT_BLOCKS` that ``hparams`` (today's layout)
    holds in place of the config file's, the command line's ``overrides`` still winning:
    ``dataset=<name>`` keeps the config file's whole block, ``dataset.KEY=VALUE`` (also
    ``+``/``++``) sets one key of the checkpoint's block, ``~dataset.KEY`` removes it."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    out = cfg.copy()
    for block in CHECKPOINT_BLOCKS:
        stored = hparams[block]
        if stored is None or any(o.key_or_group == block for o in parsed):
            continue
        merged = OmegaConf.create(dict(stored))
        for override in parsed:
            key = override.key_or_group
            if not key.startswith(f"{block}."):
                continue
            inner = key[len(block) + 1 :]
            if override.is_delete():
                parent, _, name = inner.rpartition(".")
                node = OmegaConf.select(merged, parent) if parent else merged
                if node is not None and name in node:
                    with open_dict(node):
                        del node[name]
            else:
                value = OmegaConf.select(cfg, key)
                OmegaConf.update(merged, inner, value, merge=False, force_add=True)
        with open_dict(out):
            out[block] = merged
    return out


def run_dataset_name(ckpt_path: str | None, configured: str, overrides: Sequence[str]) -> str:
    """The dataset name of an eval or predict run folder: the checkpoint's stored one, unless
    the command line gives ``dataset=`` or ``dataset.name=`` (or the checkpoint stores none).

    A checkpoint that cannot be read gives ``configured``: the run then reports it as one
    error line (:func:`read_checkpoint`), which a failure here would hide behind Hydra's.
    """
    keys = {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))}
    if not ckpt_path or keys & {"dataset", "dataset.name"}:
        return configured
    try:
        check_archive_size(Path(ckpt_path))  # nothing is inflated before the bound holds
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol")
            # mmap: the tensors stay on disk, only the small pickle is read
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        name = ckpt["hyper_parameters"]["dataset"]["name"]
    except (*CHECKPOINT_READ_ERRORS, CheckpointReadError, OSError, KeyError, TypeError):
        return configured
    # a folder name, never a path (the file is not trusted)
    return name if isinstance(name, str) and _FOLDER_NAME.fullmatch(name) else configured


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


def check_archive_size(path: Path) -> None:
    """Raise :class:`CheckpointReadError` when the zip archive ``path`` claims entries that
    unpack to more than :data:`MAX_INFLATION` times its size on disk, read from its central
    directory (``zipfile``; nothing is unpacked), or whose directory cannot be read. A file
    that is no zip archive is left to ``torch.load``, which says what is wrong with it."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointReadError(
            f"{path}: not a readable checkpoint: a damaged zip archive ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:120]})"
        ) from None
    limit = MAX_INFLATION * path.stat().st_size
    if unpacked > limit:
        raise CheckpointReadError(
            f"{path}: its entries unpack to {unpacked:,} bytes, over {MAX_INFLATION} times the "
            f"file's {path.stat().st_size:,} bytes (asl_tal.checkpoints.MAX_INFLATION; "
            "torch.save stores them uncompressed); refusing to load it"
        )


def read_checkpoint(path: str | Path | None) -> dict:
    """The contents of a local asl-tal checkpoint, read with ``weights_only=True`` (no code
    in the file runs) after :func:`check_archive_size`: a dict with ``hyper_parameters``
    (``class_names`` inside) and a ``state_dict`` of tensors. Every way of failing is one
    user error naming the file."""
    path = local_checkpoint_path(path)
    check_archive_size(path)
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
            "(the largest a checkpoint may ask for); refusing to build a model from it"
        )


def check_model_bounds(hparams: Mapping, path: Path) -> None:
    """Raise :class:`CheckpointMismatchError` unless the architecture in ``hparams`` (today's
    layout) lies within the sizes that the settings of the model's blocks trust
    (:func:`asl_tal.config_blocks.trusted_bounds`; a list value, the feature widths, entry by
    entry and at most :data:`MAX_STREAMS` long) and the classes within :data:`MAX_CLASSES`."""
    model = hparams["model"]
    for name, (target, _) in MODEL_BLOCKS.items():
        block = model.get(name)
        for key, (low, high) in trusted_bounds(target).items():
            value = block.get(key) if isinstance(block, Mapping) else None
            if isinstance(value, list | tuple):
                _int_setting(len(value), f"the length of model.{name}.{key}", path, 1, MAX_STREAMS)
            for entry in value if isinstance(value, list | tuple) else [value]:
                _int_setting(entry, f"model.{name}.{key}", path, low, high)
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


def _checked_hparams(ckpt: dict, path: Path) -> dict:
    """The hyper-parameters of ``ckpt`` (:func:`read_checkpoint` of ``path``) in today's
    layout, the architecture within bounds (:func:`check_model_bounds`)."""
    try:
        hparams = upgrade_hparams(dict(ckpt["hyper_parameters"]))
        check_model_bounds(hparams, path)
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointMismatchError(
            f"{path}: hyper-parameters in no asl-tal layout ({type(err).__name__}: {err})"
        ) from None
    return hparams


def checkpoint_hparams(path: str | Path | None) -> dict:
    """The checked hyper-parameters of the checkpoint ``path`` in today's layout: what it was
    trained with, ``dataset`` included (None when it predates stored dataset blocks)."""
    return _checked_hparams(read_checkpoint(path), Path(str(path)).expanduser())


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
    must lie within :func:`check_model_bounds`, and the model it describes is first built on the
    meta device (no memory) to check that its parameters are exactly the state dict's.
    """
    ckpt = read_checkpoint(path)
    path = Path(str(path)).expanduser()
    hparams = _checked_hparams(ckpt, path)
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
    width, when its weights do not fit this config's model, or when it holds no optimizer
    state (``best.ckpt`` and published checkpoints are for evaluation)."""
    if "optimizer_states" not in ckpt:
        raise CheckpointMismatchError(
            f"{path}: an evaluation checkpoint (weights only, no optimizer state) cannot "
            "resume training; resume from the run's checkpoints/last.ckpt"
        )
    try:
        hparams = upgrade_hparams(dict(ckpt["hyper_parameters"]))
        check_trained_on(hparams, path, list(datamodule.class_map.names), datamodule.cfg.input_dim)
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointMismatchError(
            f"{path}: hyper-parameters in no asl-tal layout ({type(err).__name__}: {err})"
        ) from None
    check_state_dict(module.state_dict(), ckpt["state_dict"], path, "the model of this config")
