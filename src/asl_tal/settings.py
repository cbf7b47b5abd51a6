"""Config blocks -> constructors, with one readable error for a missing or unknown key."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

Settings = TypeVar("Settings")


def settings_from(cls: type[Settings], block: Mapping[str, Any], where: str) -> Settings:
    """``cls(**block)``, with a missing or unknown key reported as ``where.<key>``."""
    names = {f.name for f in fields(cls)}
    _check(set(block), names, names, where)
    return cls(**block)


def check_keywords(
    func: Callable[..., Any], block: Mapping[str, Any], where: str, supplied: Sequence[str] = ()
) -> None:
    """Raise like :func:`settings_from` when ``block`` is not exactly the keyword arguments
    of ``func`` that have no default, less the ``supplied`` ones (those come from code)."""
    params = inspect.signature(func).parameters
    names = {n for n in params if n != "self"} - set(supplied)
    required = {n for n in names if params[n].default is inspect.Parameter.empty}
    _check(set(block), names, required, where)


def _check(given: set[str], names: set[str], required: set[str], where: str) -> None:
    unknown, missing = sorted(given - names), sorted(required - given)
    if unknown or missing:
        parts = [f"unknown {', '.join(f'{where}.{k}' for k in unknown)}"] if unknown else []
        parts += [f"missing {', '.join(f'{where}.{k}' for k in missing)}"] if missing else []
        raise ValueError(f"{where}: {'; '.join(parts)} (known keys: {', '.join(sorted(names))})")
