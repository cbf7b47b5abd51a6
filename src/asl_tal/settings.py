"""Config blocks -> constructors, with one readable error for a bad key or value.

:func:`settings_from` and :func:`check_keywords` check a config block against a dataclass or
a constructor before anything is built: the keys (missing, unknown), each value's type (from
the annotations: ``int``, ``float``, ``bool``, ``str``, ``None``-able, lists, ``Literal``),
the value constraints of :data:`CONSTRAINTS` (and :data:`NON_EMPTY`) and the cross-key rules
of :data:`RULES`. :func:`check_values` checks a block with no dataclass or constructor of
ours behind it (the optimizer, the callbacks, the evaluation protocol, the seed). A problem
is one :class:`ConfigValueError` line naming the full key, e.g.
``model.network.l1 (alias model.l1): expected an integer, got 'abc'``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any, Literal, TypeVar, Union

Settings = TypeVar("Settings")


class ConfigValueError(ValueError):
    """A config key that is missing, unknown, of the wrong type or out of range."""


# keys of the stable interface (conf/model/asl.yaml) that interpolate into a block's key
ALIASES = {
    "model.network.l1": "model.l1",
    "model.network.l2": "model.l2",
    "model.network.l3": "model.l3",
    "model.sensitivity.evaluator_layers": "model.l4",
    "model.network.d_emb": "model.d_emb",
    "model.network.n_heads": "model.n_heads",
    "model.network.head_width": "model.head_width",
    "model.network.input_dim": "dataset.input_dim",
    "model.network.max_seq_len": "dataset.max_seq_len",
}

Constraint = tuple[Callable[[Any], bool], str]
POSITIVE: Constraint = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Constraint = (lambda v: v >= 0, ">= 0")
FRACTION: Constraint = (lambda v: 0 <= v <= 1, "in [0, 1]")
OPEN_FRACTION: Constraint = (lambda v: 0 < v < 1, "in (0, 1)")
UP_TO_ONE: Constraint = (lambda v: 0 < v <= 1, "in (0, 1]")
BELOW_ONE: Constraint = (lambda v: 0 <= v < 1, "in [0, 1)")
ODD: Constraint = (lambda v: v > 0 and v % 2 == 1, "a positive odd number")
FINITE_POSITIVE: Constraint = (lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
# what lightning's seed_everything accepts (numpy's seed range)
SEED: Constraint = (lambda v: 0 <= v < 2**32, "in [0, 2**32)")

# value constraints by full key, checked after the type (None passes; a list: every entry)
CONSTRAINTS: dict[str, Constraint] = {
    **{f"model.network.{k}": NON_NEGATIVE for k in ("l1", "l2", "l3", "attn_window_levels")},
    **{
        f"model.network.{k}": POSITIVE
        for k in ("input_dim", "stream_dims", "d_emb", "n_heads", "head_width", "head_layers")
    },
    "model.network.max_seq_len": POSITIVE,
    "model.network.attn_window": ODD,
    "model.network.t_c_alpha": FRACTION,
    "model.network.dropout": FRACTION,
    "model.network.path_drop": BELOW_ONE,
    "model.network.prior_prob": OPEN_FRACTION,
    "model.sensitivity.evaluator_layers": NON_NEGATIVE,
    "model.sensitivity.evaluator_tile_len": POSITIVE,
    "model.sensitivity.gaussian_lr_scale": POSITIVE,
    "model.sensitivity.loc_sigma_init": POSITIVE,
    "model.ascl.weight": NON_NEGATIVE,
    "model.ascl.k": POSITIVE,
    "model.ascl.num_background": NON_NEGATIVE,
    "model.ascl.tau": POSITIVE,
    "model.ascl.proj_dim": POSITIVE,
    "model.ascl.window_ratio": UP_TO_ONE,
    "model.loss.init_loss_norm": POSITIVE,
    "model.loss.loss_norm_momentum": FRACTION,
    "model.loss.label_smoothing": FRACTION,
    **{
        f"dataset.{k}": POSITIVE
        for k in (
            "input_dim",
            "num_classes",
            "batch_size",
            "eval_batch_size",
            "fps",
            "default_fps",
            "feat_stride",
            "feat_window",
            "max_seq_len",
            "fixed_length",
        )
    },
    "dataset.num_workers": NON_NEGATIVE,
    "dataset.crop_ratio": UP_TO_ONE,
    "dataset.trunc_thresh": FRACTION,
    "dataset.clip_tolerance": NON_NEGATIVE,
    "dataset.clip_tolerance_relative": NON_NEGATIVE,
    # 1.0 would hold out every training video
    "dataset.val_holdout": BELOW_ONE,
    "seed": SEED,
    "optimizer.lr": FINITE_POSITIVE,
    "optimizer.weight_decay": NON_NEGATIVE,
    "postprocess.score_thresh": FRACTION,
    "postprocess.pre_nms_topk": POSITIVE,
    "postprocess.duration_thresh": NON_NEGATIVE,
    "postprocess.sigma": POSITIVE,
    "postprocess.iou_threshold": FRACTION,
    "postprocess.min_score": FRACTION,
    "postprocess.max_seg_num": POSITIVE,
    "postprocess.voting_thresh": FRACTION,
    "postprocess.fusion_topk": POSITIVE,
    "evaluation.tiou_thresholds": UP_TO_ONE,
    "evaluation.recall_topk": POSITIVE,
    "evaluation.recall_tiou_thresholds": UP_TO_ONE,
    "callbacks.visualization.every_n_epochs": POSITIVE,
    "callbacks.visualization.num_instances": NON_NEGATIVE,
    "callbacks.visualization.num_videos": NON_NEGATIVE,
    "callbacks.visualization.top_k": POSITIVE,
    "callbacks.visualization.tiou_thresh": UP_TO_ONE,
    "callbacks.visualization.dpi": POSITIVE,
}

# list-valued keys that need at least one entry (their entries obey CONSTRAINTS)
NON_EMPTY: frozenset[str] = frozenset({"evaluation.tiou_thresholds"})


def key_name(key: str) -> str:
    """``key`` with its stable-interface alias: ``model.network.l1 (alias model.l1)``."""
    return f"{key} (alias {ALIASES[key]})" if key in ALIASES else key


def _network_rules(block: Mapping[str, Any]) -> list[str]:
    d_emb, n_heads, stream_dims = block["d_emb"], block["n_heads"], block.get("stream_dims")
    found = []
    if d_emb % n_heads:
        found.append(
            f"{key_name('model.network.d_emb')}: {d_emb} is not a multiple of "
            f"{key_name('model.network.n_heads')} = {n_heads}"
        )
    if stream_dims is not None and sum(stream_dims) != d_emb:
        found.append(
            f"model.network.stream_dims: {list(stream_dims)} sum to {sum(stream_dims)}, "
            f"not {key_name('model.network.d_emb')} = {d_emb}"
        )
    return found


def _ascl_rules(block: Mapping[str, Any]) -> list[str]:
    if block["mode"] != "windows" or block["memory_size"] == 0:
        return []
    return [
        f"model.ascl.mode=windows keeps no memory queue, but model.ascl.memory_size is "
        f"{block['memory_size']} (topk mode's): set model.ascl.memory_size=0, and "
        "model.ascl.tau=0.07 for the released prototype's temperature"
    ]


# cross-key rules of a block, run once every value has its type: block -> problems
RULES: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "model.network": _network_rules,
    "model.ascl": _ascl_rules,
}


def settings_from(cls: type[Settings], block: Mapping[str, Any], where: str) -> Settings:
    """``cls(**block)`` for a dataclass ``cls``, the block checked first (module docstring).

    A list given for a tuple-typed field becomes a tuple (YAML has no tuples); a field whose
    type is a dataclass takes a block of its own, built the same way (``where.field``).
    """
    names = {f.name for f in fields(cls)}
    _check(set(block), names, names, where)
    hints = _hints(cls)
    nested = {
        k: settings_from(hints[k], v, f"{where}.{k}") for k, v in _blocks(block, hints, where)
    }
    _check_values({k: v for k, v in block.items() if k not in nested}, hints, where)
    return cls(**{k: nested.get(k, _tuple_if_needed(v, hints.get(k))) for k, v in block.items()})


def _blocks(
    block: Mapping[str, Any], hints: Mapping[str, Any], where: str
) -> list[tuple[str, Any]]:
    """The entries of ``block`` whose annotation is a dataclass (a block of their own)."""
    found = [(k, v) for k, v in block.items() if is_dataclass(hints.get(k))]
    for k, v in found:
        if not isinstance(v, Mapping):
            raise ConfigValueError(f"{where}.{k}: expected a block of keys, got {v!r}")
    return found


def check_keywords(
    func: Callable[..., Any], block: Mapping[str, Any], where: str, supplied: Sequence[str] = ()
) -> None:
    """Raise like :func:`settings_from` when ``block`` is not exactly the keyword arguments
    of ``func`` that have no default, less the ``supplied`` ones (those come from code), or
    when a value does not fit ``func``'s annotations or the constraints."""
    params = inspect.signature(func).parameters
    names = {n for n in params if n != "self"} - set(supplied)
    required = {n for n in names if params[n].default is inspect.Parameter.empty}
    _check(set(block), names, required, where)
    _check_values(block, _hints(func.__init__ if inspect.isclass(func) else func), where)


def _check(given: set[str], names: set[str], required: set[str], where: str) -> None:
    unknown, missing = sorted(given - names), sorted(required - given)
    if unknown or missing:
        parts = [f"unknown {', '.join(f'{where}.{k}' for k in unknown)}"] if unknown else []
        parts += [f"missing {', '.join(f'{where}.{k}' for k in missing)}"] if missing else []
        raise ConfigValueError(
            f"{where}: {'; '.join(parts)} (known keys: {', '.join(sorted(names))})"
        )


def _hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations of a dataclass or function ({} when they cannot be resolved)."""
    try:
        return typing.get_type_hints(obj)
    except Exception:  # an annotation naming something not importable at run time
        return {}


def check_values(
    block: Mapping[str, Any], where: str, hints: Mapping[str, Any] | None = None
) -> None:
    """Raise like :func:`settings_from` when a value of ``block`` does not fit its type in
    ``hints`` (name -> annotation; None: no types) or its constraints; unknown and missing
    keys are not checked. ``where`` is the block's full key ("" for top-level keys)."""
    _check_values(block, hints or {}, where)


def _check_values(block: Mapping[str, Any], hints: Mapping[str, Any], where: str) -> None:
    problems = []
    for name, value in block.items():
        key = f"{where}.{name}" if where else name
        if name in hints and not matches(value, hints[name]):
            problems.append(f"{key_name(key)}: expected {describe(hints[name])}, got {value!r}")
        elif key in NON_EMPTY and _is_list(value) and not value:
            within = f" {CONSTRAINTS[key][1]}" if key in CONSTRAINTS else ""
            problems.append(f"{key_name(key)}: must list at least one value{within}, got []")
        elif key in CONSTRAINTS and value is not None:
            test, text = CONSTRAINTS[key]
            values = value if _is_list(value) else [value]
            if not all(v is None or _satisfies(test, v) for v in values):
                problems.append(f"{key_name(key)}: must be {text}, got {value!r}")
    if not problems and where in RULES:
        problems = RULES[where](block)
    if problems:
        raise ConfigValueError("; ".join(problems))


def _satisfies(test: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(test(value))
    except TypeError:  # no annotation said what the value must be: a string, say
        return False


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _tuple_if_needed(value: Any, hint: Any) -> Any:
    arms = typing.get_args(hint) if _is_union(hint) else (hint,)
    wants_tuple = any(typing.get_origin(a) is tuple for a in arms)
    return tuple(value) if wants_tuple and isinstance(value, list) else value


def matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits an annotation (ints pass as floats, lists as tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if _is_union(hint):
        return any(matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple or origin in (list, Sequence) or hint in (list, tuple, Sequence):
        if not _is_list(value):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(matches, value, args))
        return not args or all(matches(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    try:
        return isinstance(value, origin or hint)
    except TypeError:  # an annotation isinstance cannot test: not checked
        return True


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def describe(hint: Any) -> str:
    """An annotation in words: ``int | list[int]`` -> ``an integer or a list of integers``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is None or hint is type(None):
        return "null"
    if _is_union(hint):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    simple = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if hint in simple:
        return simple[hint]
    if origin is tuple and args and args[-1] is not Ellipsis:
        kinds = {describe(a) for a in args}
        return f"a list of {len(args)} " + (
            _PLURAL.get(args[0], "values") if len(kinds) == 1 else "values"
        )
    if origin in (list, tuple, Sequence) and args:
        return "a list of " + _PLURAL.get(args[0], f"({describe(args[0])})")
    if origin in (list, tuple, Sequence) or hint in (list, tuple, Sequence):
        return "a list"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))
