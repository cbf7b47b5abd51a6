"""asl-tal's Hydra configs, shipped inside the package as ``asl_tal.conf``.

The folder sits at the top of the repository (``conf/``) and is mapped onto this package by
``pyproject.toml``, so the entry points find it as ``pkg://asl_tal.conf`` however the package
was installed. :func:`compose` builds a config the way the entry points do, for notebooks,
tests and benchmarks.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_PATH = "pkg://asl_tal.conf"

# `${sum:a,b}`: the trainer runs warm-up + training epochs
OmegaConf.register_new_resolver("sum", lambda *xs: sum(xs), replace=True)


def _doubling_ranges(l3: int) -> list[list[float]]:
    from asl_tal.models.points import doubling_ranges  # torch: imported when first resolved

    return doubling_ranges(l3 + 1)


# `${doubling_ranges:${..network.l3}}`: ActionFormer's regression ranges of the l3 + 1 levels,
# [0, 4], [4, 8], ... doubling, the last one open
OmegaConf.register_new_resolver("doubling_ranges", _doubling_ranges, replace=True)
# `${run_suffix:}`: a short random part of the run directory's name, fixed for the process, so
# two runs started in the same microsecond still get two directories; cached in the config,
# so the jobs of a sweep that a launcher starts in other processes resolve the same sweep dir
_RUN_SUFFIX = secrets.token_hex(2)
OmegaConf.register_new_resolver("run_suffix", lambda: _RUN_SUFFIX, replace=True, use_cache=True)


def _run_dataset_name(ckpt_path: str | None, configured: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    from asl_tal.checkpoints import run_dataset_name  # torch: imported when first resolved

    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return run_dataset_name(ckpt_path, configured, overrides)


# `${run_dataset_name:${ckpt_path},${dataset.name}}`: eval's and predict's run folders are
# named after the dataset the checkpoint was trained on
OmegaConf.register_new_resolver("run_dataset_name", _run_dataset_name, replace=True)


def resumed_run_dir(task_name: str, ckpt_path: str | None, fresh: str) -> str:
    """``hydra.run.dir``: for training resumed from ``<run>/checkpoints/<file>`` (an existing
    file), ``<run>``, so the run goes on in its own folder; else ``fresh``."""
    if task_name != "train" or not ckpt_path:
        return fresh
    path = Path(str(ckpt_path)).expanduser()
    if path.parent.name != "checkpoints" or not path.is_file():
        return fresh
    return str(path.parent.parent)


def hydra_record_dir(output_dir: str, later: str) -> str:
    """``hydra.output_subdir``: ``.hydra`` for the first command in a run folder, ``later``
    for the next ones (a resumed run), so no command replaces the record of an earlier one."""
    return later if (Path(output_dir) / ".hydra").exists() else ".hydra"


OmegaConf.register_new_resolver("resumed_run_dir", resumed_run_dir, replace=True)
OmegaConf.register_new_resolver("hydra_record_dir", hydra_record_dir, replace=True)


def compose(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config ``config_name`` with command-line style ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("asl_tal.conf", version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))
