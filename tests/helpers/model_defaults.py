"""The model config's defaults (``conf/model/*.yaml``), for tests that build parts directly.

The YAML is the one source of these values; tests take them from there and override what
they exercise.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from asl_tal.conf import compose
from omegaconf import DictConfig, OmegaConf

from asl_tal.callbacks import VisualizationCallback
from asl_tal.config_blocks import from_target
from asl_tal.data.dataset import SampleConfig
from asl_tal.objective.ascl import ASCLoss, ASCLSettings
from asl_tal.objective.objective import ASLObjective
from asl_tal.postprocess.config import PostprocessConfig


@functools.cache
def _composed(option: str) -> DictConfig:
    return compose("train", [f"model={option}"])


def model_config(option: str = "asl", **blocks: dict[str, Any]) -> dict:
    """The resolved ``model`` block of ``model=<option>``, with ``blocks`` merged into it.

    ``model_config(network={"d_emb": 32}, ascl={"weight": 0})`` changes those keys only;
    the values that interpolate a changed one follow it (the regression ranges follow
    ``network.l3``).
    """
    cfg = copy.deepcopy(_composed(option))
    OmegaConf.set_struct(cfg, False)
    for name, values in blocks.items():
        if isinstance(values, dict) and OmegaConf.is_dict(cfg.model.get(name)):
            cfg.model[name] = OmegaConf.merge(cfg.model[name], values)
        else:
            cfg.model[name] = values
    return OmegaConf.to_container(cfg.model, resolve=True)


def network_kwargs(**overrides: Any) -> dict:
    """``ASLNetwork`` keyword arguments of the default model, ``overrides`` applied."""
    return {**model_config()["network"], **overrides}


def make_objective(
    num_classes: int,
    d_emb: int,
    sensitivity: dict | None = None,
    ascl: dict | None = None,
    loss: dict | None = None,
) -> ASLObjective:
    """An :class:`ASLObjective` with the default settings, the given keys changed."""
    cfg = model_config(sensitivity=sensitivity or {}, ascl=ascl or {}, loss=loss or {})
    return ASLObjective.from_config(cfg, num_classes, d_emb)


def postprocess_config(**overrides: Any) -> PostprocessConfig:
    """The default ``postprocess`` settings (``conf/postprocess/default.yaml``), changed."""
    values = OmegaConf.to_container(compose("train").postprocess, resolve=True)
    return PostprocessConfig(**{**values, **overrides})


def visualization_callback(**overrides: Any) -> VisualizationCallback:
    """A :class:`VisualizationCallback` built from the ``callbacks.visualization`` block
    (``conf/callbacks/default.yaml``), ``overrides`` applied, as runs build it."""
    block = OmegaConf.to_container(compose("train").callbacks.visualization, resolve=True)
    return from_target({**block, **overrides}, "callbacks.visualization")


def make_ascl(d: int, **overrides: Any) -> ASCLoss:
    """An :class:`ASCLoss` of width ``d`` with the default ``model.ascl`` block, changed."""
    return ASCLoss(d, ASCLSettings(**{**model_config()["ascl"], **overrides}))


def sample_config(**overrides: Any) -> SampleConfig:
    """A :class:`SampleConfig` reading every video whole on its own grid (per-video fps,
    stride 1, no crop, no resampling), ``overrides`` applied."""
    whole_video = dict(
        fps=None,
        default_fps=None,
        feat_stride=1.0,
        feat_window=None,
        max_seq_len=None,
        fixed_length=None,
        crop_after_resample=False,
        resample_geometry="spec",
        crop_ratio=None,
        trunc_thresh=0.5,
        class_agnostic=False,
    )
    return SampleConfig(**{**whole_video, **overrides})
