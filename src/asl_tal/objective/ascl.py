"""Action Sensitive Contrastive Loss ``L_ASCL`` (``docs/method.md`` §6).

Two modes, both on the level-0 features:

- ``topk`` (the model config's): per GT, the mean of the ``k`` frames with the highest
  ``h_cls`` is the anchor ``f_cls``, the mean of the ``k`` highest ``h_loc`` is ``f_loc``;
  positives of an anchor are ``f_loc`` of every instance of its class in the batch;
  negatives are up to ``M`` background frames per video and the features of instances of
  other classes. A Linear-ReLU-Linear head projects, then everything is L2-normalised. With
  ``memory_size > 0`` the projected ``f_loc`` of earlier batches (detached, a first-in
  first-out queue) join the candidates: positives when of the anchor's class, negatives
  otherwise, so an anchor has positives from other videos even in a batch of two.
- ``windows`` (the released prototype): per GT a centre window (``m +- r L``) and a
  boundary feature (mean of the first and last ``r L``), positives across GTs of the same
  label; windows of ``r L`` just outside the segment are negatives only. No projection.

An instance of another class on the *same* segment (multi-label rows) is never a negative.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from asl_tal.settings import NON_NEGATIVE, POSITIVE, UP_TO_ONE

AsclMode = Literal["topk", "windows"]
ASCL_MODES = typing.get_args(AsclMode)


def info_nce(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_mask: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """Mean over positive pairs of ``-log(e^{s+} / (e^{s+} + sum_neg e^{s-}))``.

    Args:
        anchors: ``(A, e)`` L2-normalised.
        candidates: ``(K, e)`` L2-normalised.
        pos_mask: ``(A, K)`` bool positive pairs.
        neg_mask: ``(A, K)`` bool negatives of each anchor.
        tau: temperature.

    Returns:
        Scalar; exactly 0 when there is no positive pair.
    """
    # cosine similarities are <= 1, so shifting by 1/tau keeps every exponent <= 0
    logits = anchors @ candidates.T / tau - 1.0 / tau
    neg_sum = (torch.exp(logits) * neg_mask).sum(dim=1, keepdim=True)
    pair_loss = torch.log(torch.exp(logits) + neg_sum) - logits
    num_pairs = pos_mask.sum()
    return (pair_loss * pos_mask).sum() / num_pairs.clamp(min=1)


def inside_map(segments: torch.Tensor, seg_mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B, N, T)`` bool: level-0 frame ``j`` is valid and ``a <= j <= b`` for GT ``n``."""
    frames = torch.arange(valid.shape[1], device=valid.device, dtype=segments.dtype)
    return interval_map(segments[..., 0], segments[..., 1], frames) & (
        seg_mask[..., None] & valid[:, None, :]
    )


def interval_map(lo: torch.Tensor, hi: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``(B, N, T)`` bool: ``lo <= frame <= hi`` for ``lo``, ``hi`` ``(B, N)``."""
    return (frames >= lo[..., None]) & (frames <= hi[..., None])


def masked_mean(feats_t: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean features over masked frames: ``feats_t`` ``(B, T, d)``, ``weights`` ``(B, N, T)``.

    Returns ``(B, N, d)`` means and ``(B, N)`` bool (at least one frame).
    """
    counts = weights.sum(-1)
    means = torch.bmm(weights.to(feats_t.dtype), feats_t) / counts.clamp(min=1)[..., None]
    return means, counts > 0


@dataclass(frozen=True)
class ASCLSettings:
    """The ``model.ascl`` block (``conf/model/asl.yaml`` holds its values).

    Attributes:
        weight: ``λ``, the factor of ``L_ASCL`` in the total loss (0: the loss is not
            built at all).
        mode: ``"topk"`` or ``"windows"`` (module docstring).
        k: frames averaged per top-k feature (fewer for short GTs).
        num_background: ``M`` background frames sampled per video (topk mode).
        tau: temperature.
        proj_dim: projection width (topk mode; no head is built in windows mode).
        window_ratio: ``r`` of the windows mode.
        memory_size: projected ``f_loc`` features of past batches kept as extra candidates
            (topk mode only); 0 = no queue.
    """

    weight: Annotated[float, NON_NEGATIVE]
    mode: AsclMode
    k: Annotated[int, POSITIVE]
    num_background: Annotated[int, NON_NEGATIVE]
    tau: Annotated[float, POSITIVE]
    proj_dim: Annotated[int, POSITIVE.up_to(8192)]
    window_ratio: Annotated[float, UP_TO_ONE]
    memory_size: Annotated[int, NON_NEGATIVE]

    @staticmethod
    def config_rules(values: Mapping[str, Any], key: Callable[[str], str]) -> list[str]:
        """The windows mode keeps no queue: ``mode=windows`` alone (with topk mode's queue
        size) is refused with the keys that make the released prototype."""
        if values["mode"] != "windows" or values["memory_size"] == 0:
            return []
        return [
            f"{key('mode')}=windows keeps no memory queue, but {key('memory_size')} is "
            f"{values['memory_size']} (topk mode's): set {key('memory_size')}=0, and "
            f"{key('tau')}=0.07 for the released prototype's temperature"
        ]


class ASCLoss(nn.Module):
    """``L_ASCL`` over a batch (``docs/method.md`` §6).

    Args:
        d: feature width.
        settings: the ``model.ascl`` block.
    """

    def __init__(self, d: int, settings: ASCLSettings) -> None:
        super().__init__()
        if settings.mode not in ASCL_MODES:
            raise ValueError(f"ASCLoss: mode must be one of {ASCL_MODES}, not {settings.mode!r}")
        if settings.memory_size < 0 or (settings.memory_size and settings.mode != "topk"):
            raise ValueError(
                "ASCLoss: memory_size must be >= 0, and 0 in windows mode, not "
                f"{settings.memory_size}"
            )
        self.settings = settings
        self.proj = (
            nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, settings.proj_dim))
            if settings.mode == "topk"
            else None
        )
        if settings.memory_size:
            # saved in checkpoints, so a resumed run sees the queue it stopped with
            size = settings.memory_size
            self.register_buffer("memory_z", torch.zeros(size, settings.proj_dim))
            self.register_buffer("memory_label", torch.full((size,), -1))
            self.register_buffer("memory_next", torch.zeros((), dtype=torch.long))

    def forward(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor,
        segments: torch.Tensor,
        seg_mask: torch.Tensor,
        labels: torch.Tensor,
        h_cls: torch.Tensor | None = None,
        h_loc: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scalar loss.

        Args:
            feats: ``(B, d, T)`` level-0 features.
            valid: ``(B, T)`` bool.
            segments: ``(B, N, 2)`` GT in grid units; seg_mask: ``(B, N)``; labels ``(B, N)``.
            h_cls, h_loc: ``(B, N, T)`` sensitivity of every frame for every GT (topk mode;
                only the ranking inside each GT matters, no gradient is taken through it).
        """
        if self.settings.mode == "topk" and (h_cls is None or h_loc is None):
            raise ValueError("ASCLoss(mode='topk') needs h_cls and h_loc maps")
        # float32 even under bf16 autocast: similarities / tau need more than bf16's 8 bits
        with torch.autocast(feats.device.type, enabled=False):
            feats_t = feats.float().transpose(1, 2)
            inside = inside_map(segments, seg_mask, valid)
            same_segment = (segments[:, :, None, :] == segments[:, None, :, :]).all(-1)
            if self.settings.mode == "topk":
                loss = self._topk(
                    feats_t, valid, inside, labels, same_segment, h_cls.float(), h_loc.float()
                )
            else:
                loss = self._windows(feats_t, valid, segments, seg_mask, labels, same_segment)
        # keeps every parameter and the features in the graph when the loss is empty (DDP)
        return loss + 0 * feats.sum() + 0 * sum(p.sum() for p in self.parameters())

    def _topk(
        self,
        feats_t: torch.Tensor,
        valid: torch.Tensor,
        inside: torch.Tensor,
        labels: torch.Tensor,
        same_segment: torch.Tensor,
        h_cls: torch.Tensor,
        h_loc: torch.Tensor,
    ) -> torch.Tensor:
        batch, num_gt, num_frames = inside.shape
        k = min(self.settings.k, num_frames)
        f_cls, valid_cls = self._top_frames(feats_t, h_cls.detach(), inside, k)
        f_loc, _ = self._top_frames(feats_t, h_loc.detach(), inside, k)
        background = valid & ~inside.any(dim=1)
        num_bg = min(self.settings.num_background, num_frames)
        # one uniform draw per background frame, in (video, frame) order: the same draws
        # whatever the batch's padding
        draw = torch.full(background.shape, -1.0, device=valid.device)
        draw[background] = torch.rand(int(background.sum()), device=valid.device)
        score, bg_index = draw.topk(num_bg, dim=1)
        bg_feats = torch.gather(feats_t, 1, bg_index[..., None].expand(-1, -1, feats_t.shape[2]))

        z_cls = self._embed(f_cls.reshape(batch * num_gt, -1))
        z_loc = self._embed(f_loc.reshape(batch * num_gt, -1))
        z_bg = self._embed(bg_feats.reshape(batch * num_bg, -1))
        inst_valid = valid_cls.reshape(-1)
        same_class, other_class = _class_relations(labels, inst_valid, same_segment)
        bg_valid = (score >= 0).reshape(1, -1).expand(len(inst_valid), -1)
        candidates = torch.cat([z_loc, z_cls, z_bg])
        pos_mask = torch.cat(
            [same_class, torch.zeros_like(same_class), torch.zeros_like(bg_valid)], dim=1
        )
        neg_mask = torch.cat([other_class, other_class, bg_valid], dim=1)
        if self.settings.memory_size:
            flat_labels = labels.reshape(-1)
            stored = self.memory_label >= 0
            same = flat_labels[:, None] == self.memory_label[None, :]
            in_batch = inst_valid[:, None] & stored[None, :]
            candidates = torch.cat([candidates, self.memory_z])
            pos_mask = torch.cat([pos_mask, in_batch & same], dim=1)
            neg_mask = torch.cat([neg_mask, in_batch & ~same], dim=1)
        loss = info_nce(z_cls, candidates, pos_mask, neg_mask, self.settings.tau)
        if self.settings.memory_size and self.training:
            self._remember(z_loc[inst_valid].detach(), labels.reshape(-1)[inst_valid])
        return loss

    @torch.no_grad()
    def _remember(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        """Write ``(n, e)`` features and ``(n,)`` labels into the queue, oldest out first."""
        size = self.settings.memory_size
        z, labels = z[-size:], labels[-size:]
        slots = (self.memory_next + torch.arange(len(z), device=z.device)) % size
        self.memory_z[slots] = z.to(self.memory_z.dtype)
        self.memory_label[slots] = labels
        self.memory_next.copy_((self.memory_next + len(z)) % size)

    def _windows(
        self,
        feats_t: torch.Tensor,
        valid: torch.Tensor,
        segments: torch.Tensor,
        seg_mask: torch.Tensor,
        labels: torch.Tensor,
        same_segment: torch.Tensor,
    ) -> torch.Tensor:
        frames = torch.arange(valid.shape[1], device=valid.device, dtype=segments.dtype)
        a, b = segments[..., 0], segments[..., 1]
        reach = self.settings.window_ratio * (b - a)
        centre = 0.5 * (a + b)
        usable = seg_mask[..., None] & valid[:, None, :]
        centre_win = interval_map(centre - reach, centre + reach, frames) & usable
        boundary_win = (interval_map(a, a + reach, frames) | interval_map(b - reach, b, frames)) & (
            usable
        )
        outside_win = (
            (interval_map(a - reach, a, frames) & (frames < a[..., None]))
            | (interval_map(b, b + reach, frames) & (frames > b[..., None]))
        ) & usable
        f_centre, ok_centre = masked_mean(feats_t, centre_win)
        f_boundary, ok_boundary = masked_mean(feats_t, boundary_win)
        f_outside, ok_outside = masked_mean(feats_t, outside_win)

        # items of video b: its N centre features, then its N boundary features
        z = F.normalize(torch.cat([f_centre, f_boundary], dim=1).flatten(0, 1), dim=-1)
        z_out = F.normalize(f_outside.flatten(0, 1), dim=-1)
        item_valid = torch.cat([ok_centre, ok_boundary], dim=1).reshape(-1)
        same_class, other_class = _class_relations(
            labels.repeat(1, 2),
            item_valid,
            same_segment.repeat(1, 2, 2),
        )
        not_self = ~torch.eye(len(item_valid), dtype=torch.bool, device=valid.device)
        out_valid = ok_outside.reshape(1, -1).expand(len(item_valid), -1)
        pos_mask = torch.cat([same_class & not_self, torch.zeros_like(out_valid)], dim=1)
        neg_mask = torch.cat([other_class, out_valid & item_valid[:, None]], dim=1)
        return info_nce(z, torch.cat([z, z_out]), pos_mask, neg_mask, self.settings.tau)

    @staticmethod
    def _top_frames(
        feats_t: torch.Tensor, h: torch.Tensor, inside: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the ``k`` frames with the highest ``h`` inside each GT: ``(B, N, d)``.

        Ties (a constant ``h`` when the sensitivity is off) go to the earliest frames, so
        the choice does not depend on the batch's padding.
        """
        batch, num_gt, _ = inside.shape
        score = torch.where(inside, h, -torch.inf)
        top, index = score.sort(dim=-1, descending=True, stable=True)
        top, index = top[..., :k], index[..., :k]
        chosen = torch.isfinite(top)
        picked = torch.gather(
            feats_t, 1, index.reshape(batch, num_gt * k, 1).expand(-1, -1, feats_t.shape[2])
        ).reshape(batch, num_gt, k, -1)
        counts = chosen.sum(-1)
        means = (picked * chosen[..., None]).sum(2) / counts.clamp(min=1)[..., None]
        return means, counts > 0

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(x), dim=-1)


def _class_relations(
    labels: torch.Tensor, item_valid: torch.Tensor, same_segment: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-class and other-class pairs among the batch's items.

    Args:
        labels: ``(B, I)`` item labels; item ``(b, i)`` is flattened to ``b * I + i``.
        item_valid: ``(B * I,)`` bool.
        same_segment: ``(B, I, I)`` bool, items of one video lying on the same segment.

    Returns:
        ``(B I, B I)`` bool ``same_class`` and ``other_class`` (the latter excluding pairs
        on the same segment of the same video).
    """
    batch, items = labels.shape
    flat = labels.reshape(-1)
    both = item_valid[:, None] & item_valid[None, :]
    same_video = torch.eye(batch, dtype=torch.bool, device=labels.device)
    same_video = same_video.repeat_interleave(items, 0).repeat_interleave(items, 1)
    on_same_segment = torch.zeros_like(both)
    on_same_segment[same_video] = same_segment.reshape(-1)
    same_class = both & (flat[:, None] == flat[None, :])
    other_class = both & (flat[:, None] != flat[None, :]) & ~on_same_segment
    return same_class, other_class
