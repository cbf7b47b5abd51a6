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

NETWORK_KEYS = (
    "input_dim",
    "stream_dims",
    "d_emb",
    "n_heads",
    "l1",
    "l2",
    "l3",
    "head_width",
    "t_c_alpha",
    "channel_attention",
    "attn_window",
    "attn_window_levels",
    "abs_pos_enc",
    "max_seq_len",
    "dropout",
    "path_drop",
    "prior_prob",
)


class ASLDetector(nn.Module):
    """Network, point generator and objective of one ASL model.

    Args:
        network: the backbone + heads.
        objective: assignment, sensitivity modules and loss terms.
        regression_ranges: one ``(lo, hi)`` per pyramid level (None = doubling defaults).
    """

    def __init__(
        self,
        network: ASLNetwork,
        objective: ASLObjective,
        regression_ranges: Sequence[Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.objective = objective
        ranges = None if regression_ranges is None else [tuple(r) for r in regression_ranges]
        self.point_generator = PointGenerator(network.num_levels, ranges)

    @classmethod
    def from_config(
        cls, cfg: Mapping, num_classes: int, class_counts: Sequence[int] | None = None
    ) -> ASLDetector:
        """Build from the ``model`` config group (a plain dict or DictConfig)."""
        network = ASLNetwork(
            num_classes=num_classes,
            class_counts=class_counts,
            **{key: cfg[key] for key in NETWORK_KEYS},
        )
        objective = ASLObjective(
            num_classes=num_classes,
            d_emb=cfg["d_emb"],
            l4=cfg["l4"],
            ascl=dict(cfg["ascl"]),
            **dict(cfg["sensitivity"]),
            **dict(cfg["loss"]),
        )
        return cls(network, objective, cfg.get("regression_ranges"))

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
