"""The ASL detector: network + points + objective, usable without Lightning.

``ASLDetector.from_config`` builds it from the ``model`` config group; ``losses`` trains it,
``detect`` runs inference with post-processing, ``sensitivity_maps`` exposes the per-frame
action sensitivity of a batch with GT (for plots).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from asl_tal.data.batch import Batch
from asl_tal.models.network import ASLNetwork
from asl_tal.models.outputs import NetworkOutput
from asl_tal.models.points import PointGenerator
from asl_tal.objective.objective import ASLObjective
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.decode import Detections, postprocess
from asl_tal.settings import settings_from


class ASLDetector(nn.Module):
    """Network, point generator and objective of one ASL model.

    Args:
        network: the backbone + heads.
        objective: assignment, sensitivity modules and loss terms.
        point_generator: the pyramid's points and their regression ranges.
    """

    def __init__(
        self, network: ASLNetwork, objective: ASLObjective, point_generator: PointGenerator
    ) -> None:
        super().__init__()
        if point_generator.num_levels != network.num_levels:
            raise ValueError(
                f"{point_generator.num_levels} point levels for a network with "
                f"{network.num_levels} pyramid levels"
            )
        self.network = network
        self.objective = objective
        self.point_generator = point_generator

    @classmethod
    def from_config(
        cls, cfg: Mapping, num_classes: int, class_counts: Sequence[int] | None = None
    ) -> ASLDetector:
        """Build from the ``model`` config: each block feeds one constructor.

        ``network`` -> :class:`ASLNetwork`, ``points`` -> :class:`PointGenerator`,
        ``sensitivity`` / ``ascl`` / ``loss`` -> the objective's settings.
        """
        network = settings_from(
            ASLNetwork,
            cfg["network"],
            "model.network",
            num_classes=num_classes,
            class_counts=class_counts,
        )
        objective = ASLObjective.from_config(cfg, num_classes, network.d_emb)
        points = settings_from(
            PointGenerator, cfg["points"], "model.points", num_levels=network.num_levels
        )
        return cls(network, objective, points)

    @property
    def required_multiple(self) -> int:
        """Inputs must be padded to a multiple of this many steps."""
        return self.network.required_multiple

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> NetworkOutput:
        """``feats (B, D, T)``, ``mask (B, T)`` → per-level network outputs."""
        return self.network(feats, mask)

    def points(self, seq_len: int, device: torch.device) -> torch.Tensor:
        """Point table ``(P, 4)`` for inputs of length ``seq_len``."""
        return self.point_generator(seq_len, device=device)

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every loss term of a training batch (``"loss"`` is the total)."""
        out = self(batch.feats, batch.mask)
        return self.objective(out, self.points(batch.feats.shape[-1], batch.feats.device), batch)

    @torch.no_grad()
    def detect(
        self,
        batch: Batch,
        cfg: PostprocessConfig,
        video_scores: torch.Tensor | None = None,
    ) -> list[Detections]:
        """Detections in seconds, one :class:`Detections` per video of ``batch``."""
        out = self(batch.feats, batch.mask)
        points = self.points(batch.feats.shape[-1], batch.feats.device)
        return postprocess(
            points,
            out.flat_logits().float(),
            out.flat_offsets().float(),
            out.flat_mask(),
            batch.meta,
            cfg,
            video_scores=video_scores,
        )

    @torch.no_grad()
    def sensitivity_maps(self, batch: Batch) -> list[dict]:
        """Per GT instance of ``batch``: frame positions and ``p``, ``q``, ``h`` curves."""
        out = self(batch.feats, batch.mask)
        points = self.points(batch.feats.shape[-1], batch.feats.device)
        return self.objective.sensitivity_maps(out, points, batch)
