"""ActionFormer's YAML training configs → asl-tal Hydra overrides (``docs/interop.md`` §1).

:func:`translate_actionformer_config` reads an ActionFormer config (top-level
``dataset_name``, ``train_split``, ``val_split`` and the sections ``dataset``, ``model``,
``train_cfg``, ``test_cfg``, ``opt``, ``loader``) and returns a :class:`Translation`: the
dataset config of ours to start from (``thumos`` → ``thumos14``, ...), the values the file
sets under our keys, and every key that has no counterpart here with the reason.
:func:`hydra_overrides` turns it into command-line overrides, :func:`dataset_config_yaml`
into a dataset config file for ``--config-dir``.

Only the keys the file sets are translated; a key it leaves to ActionFormer's defaults
keeps the value of our dataset row. One exception: a file that sets ``max_seq_len`` or
``force_upsampling`` also sets our resampling (``fixed_length``), since ActionFormer's
``force_upsampling`` defaults to false (crop, do not resample).
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import yaml

from asl_tal.errors import UserInputError

SECTIONS = ("dataset", "model", "train_cfg", "test_cfg", "opt", "loader")

# ActionFormer key -> our key, value unchanged
DIRECT: dict[str, str] = {
    "init_rand_seed": "seed",
    "dataset.file_prefix": "dataset.file_prefix",
    "dataset.file_ext": "dataset.file_ext",
    "dataset.num_classes": "dataset.num_classes",
    "dataset.feat_stride": "dataset.feat_stride",
    "dataset.num_frames": "dataset.feat_window",
    "dataset.default_fps": "dataset.default_fps",
    "dataset.trunc_thresh": "dataset.trunc_thresh",
    "dataset.crop_ratio": "dataset.crop_ratio",
    "loader.batch_size": "dataset.batch_size",
    "loader.num_workers": "dataset.num_workers",
    "model.n_head": "model.n_heads",
    "model.head_dim": "model.head_width",
    "model.head_num_layers": "model.network.head_layers",
    "model.use_abs_pe": "model.network.abs_pos_enc",
    "model.regression_range": "model.points.regression_ranges",
    "train_cfg.center_sample_radius": "model.loss.center_radius",
    "train_cfg.cls_prior_prob": "model.network.prior_prob",
    "train_cfg.init_loss_norm": "model.loss.init_loss_norm",
    "train_cfg.dropout": "model.network.dropout",
    "train_cfg.droppath": "model.network.path_drop",
    "train_cfg.label_smoothing": "model.loss.label_smoothing",
    "test_cfg.pre_nms_thresh": "postprocess.score_thresh",
    "test_cfg.pre_nms_topk": "postprocess.pre_nms_topk",
    "test_cfg.iou_threshold": "postprocess.iou_threshold",
    "test_cfg.min_score": "postprocess.min_score",
    "test_cfg.max_seg_num": "postprocess.max_seg_num",
    "test_cfg.nms_sigma": "postprocess.sigma",
    "test_cfg.duration_thresh": "postprocess.duration_thresh",
    "test_cfg.voting_thresh": "postprocess.voting_thresh",
    "opt.learning_rate": "optimizer.lr",
    "opt.weight_decay": "optimizer.weight_decay",
    "opt.epochs": "scheduler.epochs",
}

# ActionFormer keys with no counterpart at any value -> why
NO_COUNTERPART: dict[str, str] = {
    "devices": "devices are trainer settings here: trainer=gpu, trainer=ddp trainer.devices=N",
    "model_name": "the model is always the ASL detector",
    "output_folder": "run folders are outputs/<task>/<dataset>/<time> (hydra.run.dir=...)",
    "model.embd_kernel_size": "the embedding convolutions have kernel size 3",
    "model.embd_with_ln": "the embedding convolutions are always followed by LayerNorm",
    "model.fpn_with_ln": "there is no FPN stage (the pyramid feeds the heads directly)",
    "model.fpn_start_level": "every pyramid level feeds the heads",
    "model.head_kernel_size": "the head convolutions have kernel size 3",
    "model.head_with_ln": "the heads always use LayerNorm",
    "model.max_buffer_len_factor": "points are generated for each input's own length",
    "model.use_rel_pe": "no relative position encoding (model.network.abs_pos_enc only)",
    "train_cfg.head_empty_cls": "classes without training data get prior 1e-6 automatically",
}

# ActionFormer keys whose only supported value is asl-tal's fixed behaviour
FIXED: dict[str, tuple[Any, str]] = {
    "dataset.downsample_rate": (1, "every feature step is read (no sub-sampling)"),
    "model.scale_factor": (2, "pyramid levels always halve the length"),
    "model.fpn_type": ("identity", "the pyramid feeds the heads directly (identity FPN)"),
    "model.backbone_type": ("convTransformer", "the encoder is ASL's conv + transformer"),
    "train_cfg.center_sample": ("radius", "centre sampling within model.loss.center_radius"),
}

# ActionFormer test_cfg.nms_method -> postprocess.nms_method
NMS_METHODS = {"soft": "soft_gaussian", "hard": "hard", "none": "none"}


# the most characters a config's YAML aliases may expand it to (_expanded_size)
MAX_EXPANDED_CHARS = 1_000_000

# repr() for messages: strings, lists and nesting cut short (shown)
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 160
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8
_SHORT.maxlevel = 3


class ActionFormerConfigError(UserInputError):
    """An ActionFormer config that cannot be read or translated (names the file and key)."""


@dataclass
class Translation:
    """An ActionFormer config in our terms.

    Attributes:
        source: the ActionFormer YAML file.
        dataset: our dataset config to start from (``conf/dataset/<dataset>.yaml``).
        groups: config-group choices besides the dataset (``{"optimizer": "sgd"}``).
        values: our full key → value, in the order the keys were translated.
        unmapped: ``(ActionFormer key, value, reason)`` of every key without a counterpart.
    """

    source: Path
    dataset: str
    groups: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    unmapped: list[tuple[str, Any, str]] = field(default_factory=list)


def shown(value: Any) -> str:
    """``repr(value)`` cut to a few hundred characters (long strings and lists elided with
    ``...``), for messages about a value of any size."""
    return _SHORT.repr(value)


def _expanded_size(node: yaml.Node, path: Path, sizes: dict[int, int], open_: set[int]) -> int:
    """Characters of ``node`` with every alias written out: a scalar counts its length plus
    one, a list or mapping one plus its items. A node reached again through an alias is
    counted again, but measured once (``sizes``), so a "billion laughs" file is measured in
    a few steps.

    Raises:
        ActionFormerConfigError: the size exceeds :data:`MAX_EXPANDED_CHARS`, or an alias
            refers to a node that holds it (``open_``: the nodes being measured).
    """
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise ActionFormerConfigError(
            f"{path}: a YAML alias refers to a list or mapping that holds it (line "
            f"{node.start_mark.line + 1}); an ActionFormer config has no recursive values"
        )
    if isinstance(node, yaml.ScalarNode):
        size = len(node.value) + 1
    else:
        open_.add(key)
        pairs = isinstance(node, yaml.MappingNode)
        items = chain.from_iterable(node.value) if pairs else node.value
        size = 1 + sum(_expanded_size(item, path, sizes, open_) for item in items)
        open_.discard(key)
    if size > MAX_EXPANDED_CHARS:
        raise ActionFormerConfigError(
            f"{path}: YAML aliases expand the document to more than {MAX_EXPANDED_CHARS:,} "
            "characters (an ActionFormer config has a few thousand); write the values out "
            "instead of nesting aliases"
        )
    sizes[key] = size
    return size


def _safe_load(path: Path) -> Any:
    """``yaml.safe_load`` of ``path``, refusing a document whose aliases expand it beyond
    :data:`MAX_EXPANDED_CHARS` before any value is built."""
    loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, path, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ActionFormerConfigError(f"{path}: ActionFormer config not found")
    try:
        data = _safe_load(path)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        detail = shown(str(err).replace("\n", " "))
        raise ActionFormerConfigError(f"{path}: not readable as YAML ({detail})") from None
    except RecursionError:
        raise ActionFormerConfigError(
            f"{path}: not readable as YAML (lists or mappings nested too deeply)"
        ) from None
    if not isinstance(data, dict):
        raise ActionFormerConfigError(f"{path}: expected a mapping of ActionFormer keys")
    for section in SECTIONS:
        if section in data and not isinstance(data[section], dict):
            raise ActionFormerConfigError(f"{path}: field {section!r} must be a mapping")
    return data


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """``{"dataset": {"feat_stride": 4}}`` → ``{"dataset.feat_stride": 4}`` (sections only)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    return flat


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _our_dataset(flat: Mapping[str, Any]) -> str:
    """Our dataset row for ActionFormer's ``dataset_name`` (``custom`` for the others)."""
    name = str(flat.get("dataset_name", "")).lower()
    feat_dirs = " ".join(str(d) for d in _as_list(flat.get("dataset.feat_folder", "")))
    if name == "thumos":
        return "thumos14"
    if name == "anet":
        tsp = flat.get("dataset.input_dim") == 512 or "tsp" in feat_dirs.lower()
        return "anet_tsp" if tsp else "anet_i3d"
    if name == "epic":
        noun = flat.get("dataset.num_classes") == 300
        noun = noun or "noun" in str(flat.get("dataset.json_file", "")).lower()
        return "epic_noun" if noun else "epic_verb"
    if name == "ego4d":
        return "ego4d_mq"
    return "custom"


def _split_paths(paths: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """ActionFormer's paths (relative to the folder it runs in) → ``dataset.root`` and the
    paths below it: the root is the deepest folder holding every file and feature folder."""
    folders = [os.path.dirname(p) for k, p in paths.items() if k != "dataset.feat_dir"]
    folders += _as_list(paths.get("dataset.feat_dir", []))
    absolute = {os.path.isabs(p) for p in folders}
    root = os.path.commonpath(folders) if len(absolute) == 1 else ""
    out: dict[str, Any] = {}
    for key, value in paths.items():
        rel = [os.path.relpath(p, root) if root else os.path.normpath(p) for p in _as_list(value)]
        out[key] = rel if isinstance(value, list | tuple) else rel[0]
    root = root or "."
    if base_dir is not None and not os.path.isabs(root):
        root = os.path.normpath(base_dir.resolve() / root)
    return {"dataset.root": root, **out}


def _attention_window(value: Any) -> tuple[dict[str, Any], str | None]:
    """``n_mha_win_size`` (one size, or one per level; ≤ 1 = global) → our window keys."""
    sizes = _as_list(value)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        return {}, "expected an integer or a list of integers"
    local = [s for s in sizes if s > 1]
    n_local = len(local)
    if n_local == 0:
        return {"model.network.attn_window": None}, None
    if len(set(local)) > 1 or any(s > 1 for s in sizes[n_local:]):
        return {}, (
            "per-level windows must be one size on the finest levels, global (<= 1) above: "
            "asl-tal has model.network.attn_window on the finest attn_window_levels levels"
        )
    levels = None if n_local == len(sizes) or not isinstance(value, list | tuple) else n_local
    return {"model.network.attn_window": local[0], "model.network.attn_window_levels": levels}, None


class _Translator:
    """Walks the flattened ActionFormer keys and fills a :class:`Translation`."""

    def __init__(self, path: Path, flat: dict[str, Any], base_dir: Path | None) -> None:
        self.path, self.flat, self.base_dir = path, flat, base_dir
        self.result = Translation(source=path, dataset=_our_dataset(flat))
        self.done: set[str] = set()
        self.special: dict[str, Callable[[Any], None]] = {
            "dataset_name": lambda _: None,
            "train_split": self._train_split,
            "val_split": self._val_split,
            "dataset.input_dim": self._input_dim,
            "dataset.max_seq_len": lambda _: self._length(),
            "dataset.force_upsampling": lambda _: self._length(),
            "model.backbone_arch": self._backbone_arch,
            "model.n_mha_win_size": self._window,
            "model.embd_dim": self._embd_dim,
            "model.fpn_dim": self._fpn_dim,
            "train_cfg.loss_weight": self._loss_weight,
            "train_cfg.clip_grad_l2norm": self._clip,
            "test_cfg.nms_method": self._nms_method,
            "test_cfg.multiclass_nms": self._multiclass,
            "opt.type": self._optimizer,
            "opt.momentum": self._momentum,
            "opt.warmup": self._warmup,
            "opt.warmup_epochs": self._warmup,
            "opt.schedule_type": self._schedule,
            "opt.schedule_steps": self._schedule,
            "opt.schedule_gamma": self._schedule,
        }

    def set(self, key: str, value: Any) -> None:
        self.result.values[key] = value

    def skip(self, key: str, reason: str) -> None:
        self.result.unmapped.append((key, self.flat.get(key), reason))

    def run(self) -> Translation:
        self._paths()
        for key, value in self.flat.items():
            if key in self.done:
                continue
            self.done.add(key)
            if key in DIRECT:
                self.set(DIRECT[key], value)
            elif key in self.special:
                self.special[key](value)
            elif key in NO_COUNTERPART:
                self.skip(key, NO_COUNTERPART[key])
            elif key in FIXED:
                fixed, behaviour = FIXED[key]
                same = "same value, nothing to change" if value == fixed else "no counterpart"
                self.skip(key, f"{behaviour} ({same})")
            else:
                self.skip(key, "not an ActionFormer config key")
        if "dataset.feat_dir" in self.result.values:
            # without per-stream widths, ActionFormer projects the concatenated streams at once
            self.result.values.setdefault("model.network.stream_dims", None)
        if self.result.dataset == "custom":
            self._check_custom()
        return self.result

    def _paths(self) -> None:
        names = {
            "dataset.json_file": "dataset.json_file",
            "dataset.feat_folder": "dataset.feat_dir",
            "test_cfg.ext_score_file": "dataset.ext_score_file",
        }
        paths = {}
        for af_key, our_key in names.items():
            if af_key not in self.flat:
                continue
            self.done.add(af_key)
            value = self.flat[af_key]
            if value is None and af_key == "test_cfg.ext_score_file":
                self.set(our_key, None)
                continue
            if not all(isinstance(p, str) and p for p in _as_list(value)):
                raise ActionFormerConfigError(
                    f"{self.path}: field {af_key!r} must be a path or a list of paths, "
                    f"got {shown(value)}"
                )
            paths[our_key] = value
        if paths:
            self.result.values.update(_split_paths(paths, self.base_dir))

    def _subsets(self, value: Any, key: str) -> list[str]:
        subsets = _as_list(value)
        if not subsets or not all(isinstance(s, str) for s in subsets):
            raise ActionFormerConfigError(
                f"{self.path}: field {key!r} must be a subset name or a list of them"
            )
        return subsets

    def _train_split(self, value: Any) -> None:
        self.set("dataset.train_subset", self._subsets(value, "train_split"))

    def _val_split(self, value: Any) -> None:
        # ActionFormer validates and reports on the same split
        subsets = self._subsets(value, "val_split")
        self.set("dataset.val_subset", subsets)
        self.set("dataset.test_subset", list(subsets))

    def _input_dim(self, value: Any) -> None:
        streams = len(_as_list(self.flat.get("dataset.feat_folder", [])))
        if streams > 1 and not isinstance(value, list | tuple):
            self.skip(
                "dataset.input_dim",
                f"one width ({value}) for {streams} feature folders: asl-tal needs one per "
                f"folder, dataset.input_dim=[D1,...] summing to {value}",
            )
            return
        self.set("dataset.input_dim", value)

    def _length(self) -> None:
        self.done.update(("dataset.max_seq_len", "dataset.force_upsampling"))
        max_seq_len = self.flat.get("dataset.max_seq_len")
        upsample = bool(self.flat.get("dataset.force_upsampling", False))
        if max_seq_len is not None:
            self.set("dataset.max_seq_len", max_seq_len)
        if upsample and max_seq_len is None:
            self.skip("dataset.force_upsampling", "needs dataset.max_seq_len (the target length)")
            return
        self.set("dataset.fixed_length", max_seq_len if upsample else None)
        # ActionFormer crops the upsampled features in training (its ActivityNet loader)
        self.set("dataset.crop_after_resample", upsample)

    def _backbone_arch(self, value: Any) -> None:
        arch = _as_list(value)
        if len(arch) != 3 or not all(isinstance(n, int) for n in arch):
            self.skip("model.backbone_arch", "expected 3 integers (convs, stem, branch)")
            return
        for ours, n in zip(("model.l1", "model.l2", "model.l3"), arch, strict=True):
            self.set(ours, n)

    def _window(self, value: Any) -> None:
        keys, problem = _attention_window(value)
        if problem:
            self.skip("model.n_mha_win_size", problem)
        self.result.values.update(keys)

    def _embd_dim(self, value: Any) -> None:
        if isinstance(value, list | tuple):
            self.set("model.d_emb", sum(value))
            self.set("model.network.stream_dims", list(value))
        else:
            self.set("model.d_emb", value)
            self.set("model.network.stream_dims", None)

    def _fpn_dim(self, value: Any) -> None:
        width = self.flat.get("model.embd_dim")
        width = sum(width) if isinstance(width, list | tuple) else width
        if width is not None and value == width:
            self.skip("model.fpn_dim", "no FPN stage: the pyramid width is model.d_emb (same)")
        else:
            self.skip("model.fpn_dim", "no FPN stage: the pyramid width is model.d_emb")

    def _loss_weight(self, value: Any) -> None:
        if isinstance(value, int | float) and value > 0:
            self.set("model.loss.loc_weight", value)
        else:
            self.skip("train_cfg.loss_weight", "automatic loss balancing (<= 0) is not offered")

    def _clip(self, value: Any) -> None:
        clip = value if isinstance(value, int | float) and value > 0 else None
        self.set("trainer.gradient_clip_val", clip)

    def _nms_method(self, value: Any) -> None:
        if value in NMS_METHODS:
            self.set("postprocess.nms_method", NMS_METHODS[value])
        else:
            self.skip("test_cfg.nms_method", f"expected one of {sorted(NMS_METHODS)}")

    def _multiclass(self, value: Any) -> None:
        self.set("postprocess.class_agnostic", not bool(value))

    def _optimizer(self, value: Any) -> None:
        kind = str(value).lower()
        if kind == "sgd":
            self.result.groups["optimizer"] = "sgd"
        elif kind != "adamw":
            self.skip("opt.type", "expected SGD or AdamW")

    def _momentum(self, value: Any) -> None:
        if str(self.flat.get("opt.type", "AdamW")).lower() == "sgd":
            self.set("optimizer.momentum", value)
        else:
            self.skip("opt.momentum", "used by SGD only (AdamW has optimizer.betas)")

    def _warmup(self, _: Any) -> None:
        self.done.update(("opt.warmup", "opt.warmup_epochs"))
        if self.flat.get("opt.warmup", True) is False:
            self.set("scheduler.warmup_epochs", 0)
        elif "opt.warmup_epochs" in self.flat:
            self.set("scheduler.warmup_epochs", self.flat["opt.warmup_epochs"])

    def _schedule(self, _: Any) -> None:
        keys = ("opt.schedule_type", "opt.schedule_steps", "opt.schedule_gamma")
        self.done.update(keys)
        kind = str(self.flat.get("opt.schedule_type", "cosine")).lower()
        if kind == "cosine":
            self.result.groups["scheduler"] = "warmup_cosine"
            for key in keys[1:]:
                if key in self.flat:
                    self.skip(key, "used by the multistep schedule only")
            return
        if kind != "multistep":
            self.skip("opt.schedule_type", "expected cosine or multistep")
            return
        self.result.groups["scheduler"] = "warmup_step"
        epochs, steps = self.flat.get("opt.epochs"), self.flat.get("opt.schedule_steps")
        if steps is not None and not epochs:
            self.skip("opt.schedule_steps", "needs opt.epochs (milestones are fractions)")
        elif steps is not None:
            self.set("scheduler.milestones", [s / epochs for s in _as_list(steps)])
        if "opt.schedule_gamma" in self.flat:
            self.set("scheduler.gamma", self.flat["opt.schedule_gamma"])

    def _check_custom(self) -> None:
        needed = {
            "dataset.json_file": "dataset.json_file",
            "dataset.feat_dir": "dataset.feat_folder",
            "dataset.input_dim": "dataset.input_dim",
            "dataset.num_classes": "dataset.num_classes",
        }
        missing = [af for ours, af in needed.items() if ours not in self.result.values]
        if missing:
            name = self.flat.get("dataset_name")
            raise ActionFormerConfigError(
                f"{self.path}: dataset_name {shown(name)} has no asl-tal dataset config, so the "
                f"file must set {', '.join(missing)} (or pass --dataset <ours>)"
            )


def translate_actionformer_config(
    path: str | Path, base_dir: str | Path | None = None, dataset: str | None = None
) -> Translation:
    """Read an ActionFormer YAML config and translate it (module docstring).

    Args:
        path: the ActionFormer config.
        base_dir: the folder ActionFormer ran in, which its relative paths start from;
            None keeps them relative (resolved from where ``asl-train`` runs, as
            ActionFormer resolves them from where ``train.py`` runs).
        dataset: our dataset config to start from, instead of the one ``dataset_name``
            picks.

    Raises:
        ActionFormerConfigError: an unreadable file or a malformed section or path.
    """
    path = Path(path)
    flat = _flatten(_load(path))
    result = _Translator(path, flat, None if base_dir is None else Path(base_dir)).run()
    if dataset is not None:
        result.dataset = dataset
    return result


_PLAIN = re.compile(r"[A-Za-z_./\-][A-Za-z0-9_./\-]*")
_KEYWORDS = {"null", "true", "false", "nan", "inf"}


def override_value(value: Any) -> str:
    """A value in Hydra's override grammar: ``None`` → ``null``, lists in brackets,
    strings quoted unless plain (``.npy``, ``data/thumos``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _KEYWORDS:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hydra_overrides(translation: Translation) -> list[str]:
    """Command-line overrides: the dataset and other group choices first, then the values."""
    groups = {"dataset": translation.dataset, **translation.groups}
    return [f"{group}={choice}" for group, choice in groups.items()] + [
        f"{key}={override_value(value)}" for key, value in translation.values.items()
    ]


def _nested(values: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def dataset_config_yaml(translation: Translation, name: str) -> str:
    """A dataset config ``<dir>/dataset/<name>.yaml``, used as ``asl-train --config-dir
    <dir> dataset=<name>``: our row's config (its defaults list), then the translated
    values; group choices besides the dataset stay command-line overrides (named in the
    header)."""
    values = {
        "dataset.name": name,
        "dataset.how_to_get": f"the data of ActionFormer config {translation.source}",
        **translation.values,
    }
    body = {
        "defaults": [translation.dataset, "_self_"],
        **_nested(values),
    }
    groups = " ".join(f"{g}={c}" for g, c in translation.groups.items())
    header = [
        "# @package _global_",
        f"# Translated from the ActionFormer config {translation.source} by",
        "# asl-convert actionformer-config; asl-train --help lists every key.",
        f"# Use: asl-train --config-dir <folder above dataset/> dataset={name} {groups}".rstrip(),
    ]
    header += [
        f"# no counterpart: {key} = {shown(value)}: {why}"
        for key, value, why in translation.unmapped
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False)
