"""The objective's settings, one dataclass per block of the ``model`` config, and what every
block of ``model`` feeds (:data:`MODEL_BLOCKS`).

``model.sensitivity`` -> :class:`SensitivitySettings`, ``model.loss`` ->
:class:`LossSettings`, ``model.ascl`` -> :class:`~asl_tal.objective.ascl.ASCLSettings`. The
fields have no defaults: ``conf/model/asl.yaml`` is the one place that says what they are,
and a key that is missing or unknown is an error naming the block and the key
(:func:`asl_tal.config_blocks.settings_from`), as is a value of the wrong type or out of range.
:func:`check_model_config` checks the whole ``model`` config that way before any data is
loaded or anything is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from asl_tal.config_blocks import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    ConfigValueError,
    check_settings,
    key_name,
)
from asl_tal.ema import EMASettings
from asl_tal.models.network import ASLNetwork
from asl_tal.models.points import PointGenerator
from asl_tal.objective.ascl import ASCLSettings
from asl_tal.objective.sensitivity import EvaluatorMask, Normalize, WeightNormalize


@dataclass(frozen=True)
class SensitivitySettings:
    """How action sensitivity weights the losses (docs/method.md §3–§5).

    Attributes:
        class_level: build and use ``p`` (the per-class Gaussians).
        instance_level: build ``Phi`` and use ``q`` and ``L_s``.
        evaluator_layers: conv layers of each instance evaluator (``l4``).
        evaluator_width: channels of ``Phi``'s conv layers; None = the feature width ``d``.
        evaluator_tile_len: frames per tile of the batched ``Phi`` evaluation.
        divide_by_stride: ``x = (m - t) / (s L)``; off uses ``s = 1``.
        normalize: ``"none"`` or ``"mean"`` (``p`` rescaled to mean 1 per GT).
        weight_normalize: ``"none"``, ``"batch"`` or ``"gt"``: the loss weights ``h`` of the
            positives divided by their detached mean over the batch's positives, or over
            each GT's, so the sensitivity moves weight between frames without changing the
            positives' total.
        gaussian_lr_scale: the learning rate of ``p``'s Gaussians over the optimizer's.
        loc_sigma_init: initial ``sigma`` of ``p_loc``'s start and end Gaussians.
        detach_instance: ``q`` enters the weights detached.
        evaluator_mask: ``"inside_gt"`` or ``"positives"``.
        loc_weight_includes_cls: multiply the localisation weight by ``p_cls``.
    """

    class_level: bool
    instance_level: bool
    evaluator_layers: Annotated[int, NON_NEGATIVE.up_to(32)]
    evaluator_width: Annotated[int | None, POSITIVE]
    evaluator_tile_len: Annotated[int, POSITIVE]
    divide_by_stride: bool
    normalize: Normalize
    weight_normalize: WeightNormalize
    gaussian_lr_scale: Annotated[float, POSITIVE]
    loc_sigma_init: Annotated[float, POSITIVE]
    detach_instance: bool
    evaluator_mask: EvaluatorMask
    loc_weight_includes_cls: bool


@dataclass(frozen=True)
class LossSettings:
    """Label assignment, the loss normaliser and the classification / localisation terms.

    Attributes:
        init_loss_norm: initial ``N`` (the EMA of the positive count).
        loss_norm_momentum: EMA momentum of ``N``.
        label_smoothing: focal-loss label smoothing ``eps``.
        center_radius: centre-sampling radius in strides; None = every point of the
            assigned level inside the GT is a positive.
        focal_alpha, focal_gamma: focal-loss parameters.
        cls_weight, loc_weight: factors of ``L_cls`` and ``L_loc``.
    """

    init_loss_norm: Annotated[float, POSITIVE]
    loss_norm_momentum: Annotated[float, FRACTION]
    label_smoothing: Annotated[float, FRACTION]
    center_radius: float | None
    focal_alpha: float
    focal_gamma: float
    cls_weight: float
    loc_weight: float


# what each block of ``model`` feeds: a settings dataclass, or a constructor with the
# arguments that the code supplies (not config keys)
MODEL_BLOCKS: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "network": (ASLNetwork, ("num_classes", "class_counts")),
    "points": (PointGenerator, ("num_levels",)),
    "sensitivity": (SensitivitySettings, ()),
    "ascl": (ASCLSettings, ()),
    "loss": (LossSettings, ()),
    "ema": (EMASettings, ()),
}


def check_model_config(model: Mapping[str, Any]) -> None:
    """Check every block of the resolved ``model`` config against what it builds (keys,
    types, values; :mod:`asl_tal.config_blocks`) without building anything.

    Raises:
        ConfigValueError: one line naming the key, e.g.
            ``model.network.l3 (alias model.l3): must be >= 0, got -1``.
    """

    def block(name: str) -> Mapping[str, Any]:
        value = model.get(name)
        if not isinstance(value, Mapping):
            raise ConfigValueError(f"model.{name}: expected a block of keys, got {value!r}")
        return value

    for name, (target, supplied) in MODEL_BLOCKS.items():
        check_settings(target, block(name), f"model.{name}", supplied)
    network = model["network"]
    ranges = model["points"]["regression_ranges"]
    if len(ranges) != network["l3"] + 1:
        raise ConfigValueError(
            f"model.points.regression_ranges: {len(ranges)} range(s), but "
            f"{key_name('model.network.l3')} = {network['l3']} makes {network['l3'] + 1} "
            "pyramid levels (one range each)"
        )
