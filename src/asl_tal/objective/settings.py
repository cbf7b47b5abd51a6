"""The objective's settings, one dataclass per block of the ``model`` config.

``model.sensitivity`` -> :class:`SensitivitySettings`, ``model.loss`` ->
:class:`LossSettings`; ``model.ascl`` is the keyword arguments of
:class:`~asl_tal.objective.ascl.ASCLoss`. The fields have no defaults: ``conf/model/asl.yaml``
is the one place that says what they are, and a key that is missing or unknown is an error
naming the block and the key (:func:`asl_tal.settings.settings_from`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SensitivitySettings:
    """How action sensitivity weights the losses (docs/method.md §3–§5).

    Attributes:
        class_level: build and use ``p`` (the per-class Gaussians).
        instance_level: build ``Phi`` and use ``q`` and ``L_s``.
        evaluator_layers: conv layers of each instance evaluator (``l4``).
        evaluator_tile_len: frames per tile of the batched ``Phi`` evaluation.
        divide_by_stride: ``x = (m - t) / (s L)``; off uses ``s = 1``.
        normalize: ``"none"`` or ``"mean"`` (``p`` rescaled to mean 1 per GT).
        detach_instance: ``q`` enters the weights detached.
        evaluator_mask: ``"inside_gt"`` or ``"positives"``.
        loc_weight_includes_cls: multiply the localisation weight by ``p_cls``.
    """

    class_level: bool
    instance_level: bool
    evaluator_layers: int
    evaluator_tile_len: int
    divide_by_stride: bool
    normalize: str
    detach_instance: bool
    evaluator_mask: str
    loc_weight_includes_cls: bool


@dataclass(frozen=True)
class LossSettings:
    """Label assignment, the loss normaliser and the classification / localisation terms.

    Attributes:
        init_loss_norm: initial ``N`` (the EMA of the positive count).
        loss_norm_momentum: EMA momentum of ``N``.
        label_smoothing: focal-loss label smoothing ``eps``.
        center_radius: centre-sampling radius in strides.
        focal_alpha, focal_gamma: focal-loss parameters.
        cls_weight, loc_weight: factors of ``L_cls`` and ``L_loc``.
    """

    init_loss_norm: float
    loss_norm_momentum: float
    label_smoothing: float
    center_radius: float
    focal_alpha: float
    focal_gamma: float
    cls_weight: float
    loc_weight: float
