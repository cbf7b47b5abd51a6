"""Every value that runs is in the YAML: no parameter that a config block feeds has a Python
default, and every block of ours feeds something that declares exactly its keys.

The blocks come from the configs themselves: every option of every config group is
composed, and each block found in it is a ``_target_`` of ours (what it feeds:
``asl_tal.settings.target_of``), a block that ``asl_tal.app.CONFIG_BLOCKS`` says
what it feeds, a third-party ``_target_`` (torch, Lightning: left alone) or a group of
blocks (``callbacks``, ``logger``). A new block of ours is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.app import CONFIG_BLOCKS
from asl_tal.settings import HYDRA_KEYS, target_of

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
# nodes whose own values are no block: the entry points' keys (train, eval, predict), the
# stable interface's model keys (l1..l4, d_emb, ...) and the folders, which blocks interpolate
ROOTS = {"", "model", "paths"}

Fed = tuple[Callable[..., Any], tuple[str, ...]]


@functools.cache
def composed() -> dict[str, dict]:
    """Each option of each group (and the eval and predict entry configs), unresolved."""
    runs = {
        f"{group}={path.stem}": ("train", [f"{group}={path.stem}"])
        for group in GROUPS
        if group != "hydra"
        for path in sorted((CONF / group).glob("*.yaml"))
    }
    runs["eval"] = ("eval", ["ckpt_path=x.ckpt"])
    runs["predict"] = ("predict", ["ckpt_path=x.ckpt", "input=x"])
    return {
        name: OmegaConf.to_container(compose(config, overrides), resolve=False)
        for name, (config, overrides) in runs.items()
    }


def feeds(path: str, block: dict) -> Fed | None:
    """What a block of ours feeds and the arguments the code supplies; None for any other
    block (a third-party ``_target_``, a group of blocks)."""
    if path in CONFIG_BLOCKS:
        return CONFIG_BLOCKS[path]
    target = target_of(block)
    if target is None:
        return None
    return target, tuple(name for name in parameters(target) if name not in block)


def parameters(target: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The parameters of a dataclass (its fields), a constructor or a function."""
    return {n: p for n, p in inspect.signature(target).parameters.items() if n != "self"}


def blocks(node: dict, path: str = "") -> Iterator[tuple[str, dict, Fed | None]]:
    """Every block under ``node`` (itself included) with its full key and what it feeds.
    The blocks inside a ``_target_`` block are not walked into: a third-party one's are not
    ours, one of ours checks its own (:func:`problems`)."""
    fed = feeds(path, node)
    yield path, node, fed
    if fed is not None or "_target_" in node:
        return
    for key, value in node.items():
        if isinstance(value, dict):
            yield from blocks(value, f"{path}.{key}" if path else key)


def problems(path: str, block: dict, target: Callable[..., Any], supplied: tuple[str, ...]):
    """What is wrong between ``block`` and the parameters of ``target``: a parameter with a
    default, ``*args`` / ``**kwargs``, a key it does not take, a parameter the block does not
    give (less the ``supplied`` ones), a block of keys that no dataclass declares; a
    dataclass-typed field is checked against its own block."""
    name = getattr(target, "__qualname__", repr(target))
    params = parameters(target)
    keys = set(block) - HYDRA_KEYS
    hints = typing.get_type_hints(target) if dataclasses.is_dataclass(target) else {}
    found = [
        f"{path} -> {name}({n}=...): a default"
        for n, p in params.items()
        if n not in supplied and p.default is not inspect.Parameter.empty
    ]
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    for n, p in list(params.items()):
        if p.kind in stars:
            found.append(f"{path} -> {name}: takes {stars[p.kind]}{n}")
            del params[n]
    found += [f"{path}.{k}: not a parameter of {name}" for k in sorted(keys - set(params))]
    found += [f"{path}.{k}: not in the config" for k in sorted(set(params) - keys - {*supplied})]
    for key in sorted(keys & set(params)):
        if not isinstance(block[key], dict):
            continue
        if dataclasses.is_dataclass(hints.get(key)):
            found += problems(f"{path}.{key}", block[key], hints[key], ())
        else:
            found.append(f"{path}.{key}: a block of keys that no dataclass declares")
    return found


def test_every_block_feeds_something_declared():
    strays = {
        f"{path} ({option})"
        for option, cfg in composed().items()
        for path, block, fed in blocks(cfg)
        if fed is None and "_target_" not in block and path not in ROOTS
        if any(not isinstance(value, dict | None) for value in block.values())
    }
    assert not strays, (
        "blocks that feed nothing declared (name the class as their _target_, or add them "
        f"to asl_tal.app.CONFIG_BLOCKS): {sorted(strays)}"
    )


def test_no_parameter_fed_from_config_has_a_default():
    found = set()
    checked = set()
    for option, cfg in composed().items():
        for path, block, fed in blocks(cfg):
            if fed is not None:
                checked.add(path)
                found |= {f"{p} ({option})" for p in problems(path, block, *fed)}
    assert not found, sorted(found)
    # the walk reaches the blocks it is meant to check
    assert {
        "dataset",
        "model.network",
        "model.points",
        "model.ascl",
        "model.ema",
        "postprocess",
        "evaluation",
        "callbacks.visualization",
        "callbacks.epoch_log",
        "scheduler",
    } <= checked


def test_the_check_finds_a_default_keyword_arguments_and_stray_keys():
    def defaulted(a: int, b: int = 2) -> None: ...

    def keywords(a: int, **rest: int) -> None: ...

    name = defaulted.__qualname__
    assert problems("x", {"a": 1, "b": 2}, defaulted, ()) == [f"x -> {name}(b=...): a default"]
    assert f"x -> {keywords.__qualname__}: takes **rest" in problems("x", {"a": 1}, keywords, ())
    assert problems("x", {"a": 1, "c": 3}, defaulted, ("b",)) == [f"x.c: not a parameter of {name}"]
