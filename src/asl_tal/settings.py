"""Config blocks -> frozen dataclasses, with one readable error for missing / unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

Settings = TypeVar("Settings")


def settings_from(cls: type[Settings], block: Mapping[str, Any], where: str) -> Settings:
    """``cls(**block)``, with a missing or unknown key reported as ``where.<key>``."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(block) - names)
    missing = sorted(names - set(block))
    if unknown or missing:
        parts = [f"unknown {', '.join(f'{where}.{k}' for k in unknown)}"] if unknown else []
        parts += [f"missing {', '.join(f'{where}.{k}' for k in missing)}"] if missing else []
        raise ValueError(f"{where}: {'; '.join(parts)} (known keys: {', '.join(sorted(names))})")
    return cls(**block)
