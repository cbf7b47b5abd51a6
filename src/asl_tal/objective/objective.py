"""The ASL objective ``L = L_cls + L_loc + L_s + lambda L_ASCL`` (``docs/method.md`` §2-§6).

Sensitivity weights (``Table c``): ``h = 1`` (baseline), ``q`` (+Inst.), ``p`` (+Class.),
``p + q`` (+ASL). ``L_cls`` weights positives by ``h_cls`` (negatives by 1), ``L_loc`` weights
positives by ``h_loc`` (times ``p_cls`` with ``loc_weight_includes_cls`` and class-level on).
Both are divided by ``N``, an EMA of the positive count kept as a buffer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import nn

from asl_tal.config_blocks import settings_from
from asl_tal.data.batch import Batch
from asl_tal.models.outputs import NetworkOutput
from asl_tal.objective.ascl import ASCLoss, ASCLSettings, inside_map
from asl_tal.objective.assignment import Targets, assign_targets
from asl_tal.objective.diou import DIoULoss, offset_iou
from asl_tal.objective.focal import SigmoidFocalLoss
from asl_tal.objective.sensitivity import (
    ClassSensitivity,
    InstanceSensitivity,
    combine_sensitivity,
    mean_per_group,
)
from asl_tal.objective.sensitivity_loss import SensitivityRegressionLoss
from asl_tal.objective.settings import LossSettings, SensitivitySettings


def zero_distance_shares(offsets: torch.Tensor, num_pos: torch.Tensor) -> dict[str, torch.Tensor]:
    """``zero_start``, ``zero_end``: the share of the ``(N, 2)`` positive ``offsets`` that are
    exactly 0, each a 0-d float (0 without positives)."""
    shares = (offsets == 0).sum(0).to(torch.float32) / num_pos.clamp(min=1.0)
    return {"zero_start": shares[0], "zero_end": shares[1]}


class ASLObjective(nn.Module):
    """Assignment, sensitivity weights and the four loss terms.

    Args:
        num_classes: ``C``.
        d_emb: pyramid feature width ``d``.
        sensitivity: the ``model.sensitivity`` block.
        ascl: the ``model.ascl`` block.
        loss: the ``model.loss`` block.
    """

    def __init__(
        self,
        num_classes: int,
        d_emb: int,
        sensitivity: SensitivitySettings,
        ascl: ASCLSettings,
        loss: LossSettings,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.sensitivity_settings = sensitivity
        self.loss_settings = loss
        self.center_radius = math.inf if loss.center_radius is None else loss.center_radius
        self.ascl_weight = ascl.weight
        self.register_buffer("loss_normalizer", torch.tensor(float(loss.init_loss_norm)))

        self.focal = SigmoidFocalLoss(loss.focal_alpha, loss.focal_gamma, loss.label_smoothing)
        self.diou = DIoULoss()
        self.class_sensitivity = (
            ClassSensitivity(
                num_classes,
                sensitivity.divide_by_stride,
                sensitivity.normalize,
                sensitivity.gaussian_lr_scale,
                sensitivity.loc_sigma_init,
            )
            if sensitivity.class_level
            else None
        )
        self.instance_sensitivity = (
            InstanceSensitivity(
                d_emb,
                sensitivity.evaluator_layers,
                sensitivity.evaluator_width,
                sensitivity.evaluator_mask,
                sensitivity.evaluator_tile_len,
            )
            if sensitivity.instance_level
            else None
        )
        self.sensitivity_loss = SensitivityRegressionLoss() if sensitivity.instance_level else None
        self.ascl = ASCLoss(d_emb, ascl) if ascl.weight > 0 else None

    @classmethod
    def from_config(cls, cfg: Mapping, num_classes: int, d_emb: int) -> ASLObjective:
        """Build from the ``model`` config's ``sensitivity``, ``ascl`` and ``loss`` blocks."""
        return cls(
            num_classes,
            d_emb,
            settings_from(SensitivitySettings, cfg["sensitivity"], "model.sensitivity"),
            settings_from(ASCLSettings, cfg["ascl"], "model.ascl"),
            settings_from(LossSettings, cfg["loss"], "model.loss"),
        )

    def forward(
        self, out: NetworkOutput, points: torch.Tensor, batch: Batch
    ) -> dict[str, torch.Tensor]:
        """Loss terms of one batch.

        Args:
            out: the network's per-level outputs.
            points: ``(P, 4)`` point table, row-aligned with ``out``'s flattened levels.
            batch: the batch (GT segments in grid units).

        Returns:
            ``loss`` (total), ``cls``, ``loc``, ``sens``, ``ascl``, ``num_pos`` (float) and
            ``zero_start``, ``zero_end``: the share of positive points whose regressed
            start / end distance is exactly 0 (1 on every step: a dead ReLU channel), all
            0-d tensors (no host sync).
        """
        self._check_shapes(out, points, batch)
        targets = assign_targets(
            points,
            batch.segments,
            batch.seg_mask,
            batch.labels,
            self.num_classes,
            self.center_radius,
        )
        valid = out.flat_mask()
        pos = targets.pos_mask & valid
        num_pos = pos.sum().to(torch.float32)
        normalizer = self._normalizer(num_pos)

        logits = out.flat_logits()
        offsets = out.flat_offsets()
        sens = self.point_sensitivity(out, points, batch, targets, pos)
        w_cls, w_loc = sens["w_cls"], sens["w_loc"]

        focal = self.focal(logits, targets.cls_targets).sum(-1)
        loss_cls = (focal * w_cls * valid).sum() / normalizer
        diou = self.diou(offsets[pos], targets.reg_targets[pos])
        loss_loc = (diou * w_loc[pos]).sum() / normalizer

        zero = logits.new_zeros(())
        loss_sens = zero
        if self.sensitivity_loss is not None:
            with torch.no_grad():
                gt_label = torch.gather(batch.labels, 1, targets.gt_index.clamp(min=0))
                quality_cls = torch.sigmoid(
                    torch.gather(logits, 2, gt_label.clamp(min=0)[..., None]).squeeze(-1)
                )
                quality_loc = offset_iou(offsets[pos], targets.reg_targets[pos])
            loss_sens = self.sensitivity_loss(
                sens["q_cls"][pos], sens["q_loc"][pos], quality_cls[pos], quality_loc, normalizer
            )

        loss_ascl = zero
        if self.ascl is not None:
            h_cls = h_loc = None
            if self.ascl.settings.mode == "topk":
                maps = self._level0_maps(out, batch)
                h_cls, h_loc = maps["h_cls"], maps["h_loc"]
            loss_ascl = self.ascl(
                out.feats[0],
                out.masks[0],
                batch.segments,
                batch.seg_mask,
                batch.labels,
                h_cls,
                h_loc,
            )

        total = (
            self.loss_settings.cls_weight * loss_cls
            + self.loss_settings.loc_weight * loss_loc
            + loss_sens
            + self.ascl_weight * loss_ascl
        )
        return {
            "loss": total,
            "cls": loss_cls,
            "loc": loss_loc,
            "sens": loss_sens,
            "ascl": loss_ascl,
            "num_pos": num_pos,
            **zero_distance_shares(offsets[pos].detach(), num_pos),
        }

    def _normalizer(self, num_pos: torch.Tensor) -> torch.Tensor:
        """Update ``N`` (training only; ranks share the mean positive count) and return it."""
        if self.training:
            count = num_pos.detach().clone()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(count)
                count = count / dist.get_world_size()
            m = self.loss_settings.loss_norm_momentum
            self.loss_normalizer.mul_(m).add_((1 - m) * count.clamp(min=1))
        return self.loss_normalizer.detach().clone()

    def point_sensitivity(
        self,
        out: NetworkOutput,
        points: torch.Tensor,
        batch: Batch,
        targets: Targets,
        pos: torch.Tensor,
    ) -> dict[str, torch.Tensor | None]:
        """Sensitivity and loss weights at every point, each ``(B, P)``.

        Returns ``p_cls``, ``p_loc``, ``q_cls``, ``q_loc`` (None when switched off; ``q`` with
        its gradient, 0 on negatives), ``h_cls``, ``h_loc`` (``q`` detached when
        ``detach_instance``), ``w_cls`` (``h_cls`` on positives ``pos``, 1 elsewhere) and
        ``w_loc`` (``h_loc``, times ``p_cls`` with ``loc_weight_includes_cls``; only its
        values on positives are used). With ``weight_normalize`` ``batch`` / ``gt`` both
        weights are divided by their detached mean over the batch's / each GT's positives.
        """
        num_batch, num_gt = batch.seg_mask.shape
        gt = targets.gt_index.clamp(min=0)
        p_cls = p_loc = q_cls = q_loc = None
        if self.class_sensitivity is not None:
            seg = torch.gather(batch.segments, 1, gt[..., None].expand(-1, -1, 2))
            label = torch.gather(batch.labels, 1, gt)
            group = torch.arange(num_batch, device=gt.device)[:, None] * num_gt + gt
            p_cls, p_loc = self.class_sensitivity(
                points[:, 0],
                points[:, 3],
                seg,
                label,
                group=torch.where(pos, group, -1),
                num_groups=num_batch * num_gt,
            )
        if self.instance_sensitivity is not None:
            q_cls, q_loc = self.instance_sensitivity.at_positives(
                out.feats, out.masks, points, batch.segments, targets.gt_index, pos
            )
        q_cls_w, q_loc_w = q_cls, q_loc
        settings = self.sensitivity_settings
        if settings.detach_instance and q_cls is not None:
            q_cls_w, q_loc_w = q_cls.detach(), q_loc.detach()
        like = pos.to(out.cls_logits[0].dtype)
        h_cls = combine_sensitivity(p_cls, q_cls_w, like)
        h_loc = combine_sensitivity(p_loc, q_loc_w, like)
        w_cls = h_cls
        w_loc = h_loc * p_cls if settings.loc_weight_includes_cls and p_cls is not None else h_loc
        if settings.weight_normalize != "none" and (p_cls is not None or q_cls is not None):
            if settings.weight_normalize == "gt":
                group = torch.arange(num_batch, device=gt.device)[:, None] * num_gt + gt
            else:
                group = torch.zeros_like(gt)
            group = torch.where(pos, group, -1)
            w_cls = w_cls / mean_per_group(w_cls.detach(), group, num_batch * num_gt)
            w_loc = w_loc / mean_per_group(w_loc.detach(), group, num_batch * num_gt)
        return {
            "p_cls": p_cls,
            "p_loc": p_loc,
            "q_cls": q_cls,
            "q_loc": q_loc,
            "h_cls": h_cls,
            "h_loc": h_loc,
            "w_cls": torch.where(pos, w_cls, 1.0),
            "w_loc": w_loc,
        }

    @torch.no_grad()
    def _level0_maps(self, out: NetworkOutput, batch: Batch) -> dict[str, torch.Tensor | None]:
        """``p``, ``q``, ``h`` of every level-0 frame for every GT, ``(B, N, T_0)``.

        Frames outside a GT hold meaningless values; ``inside`` (bool) marks the rest. With
        ``normalize="mean"``, ``p`` is rescaled to mean 1 over each GT's level-0 frames.
        """
        valid = out.masks[0]
        num_batch, num_gt = batch.seg_mask.shape
        inside = inside_map(batch.segments, batch.seg_mask, valid)
        frames = torch.arange(valid.shape[1], device=valid.device, dtype=batch.segments.dtype)
        p_cls = p_loc = q_cls = q_loc = None
        if self.class_sensitivity is not None:
            group = torch.arange(num_batch * num_gt, device=valid.device).reshape(
                num_batch, num_gt, 1
            )
            p_cls, p_loc = self.class_sensitivity(
                frames,
                torch.ones_like(frames),
                batch.segments[:, :, None, :],
                batch.labels[..., None],
                group=torch.where(inside, group, -1),
                num_groups=num_batch * num_gt,
            )
        if self.instance_sensitivity is not None:
            q_cls, q_loc = self.instance_sensitivity.inside_gts(
                out.feats[0], valid, batch.segments, batch.seg_mask
            )
        like = inside.to(out.feats[0].dtype)
        return {
            "inside": inside,
            "p_cls": p_cls,
            "p_loc": p_loc,
            "q_cls": q_cls,
            "q_loc": q_loc,
            "h_cls": combine_sensitivity(p_cls, q_cls, like),
            "h_loc": combine_sensitivity(p_loc, q_loc, like),
        }

    def sensitivity_maps(
        self, out: NetworkOutput, points: torch.Tensor, batch: Batch
    ) -> list[dict]:
        """Per GT instance, the sensitivity of each level-0 frame inside it (for plots).

        Returns one dict per real GT row: ``video`` (batch index), ``segment`` ``[a, b]``,
        ``label``, ``frames`` (grid positions), ``p_cls``, ``p_loc``, ``q_cls``, ``q_loc``,
        ``h_cls``, ``h_loc`` (numpy arrays over the frames; None when switched off) and
        ``gaussians`` (the class's ``mu``/``sigma``; empty without class-level sensitivity).
        """
        self._check_shapes(out, points, batch)
        maps = self._level0_maps(out, batch)
        inside = maps["inside"].cpu()
        host = {k: None if v is None else v.float().cpu() for k, v in maps.items()}
        segments = batch.segments.cpu()
        labels = batch.labels.cpu()
        records = []
        for b, n in torch.nonzero(batch.seg_mask.cpu()).tolist():
            frames = torch.nonzero(inside[b, n]).squeeze(1)
            label = int(labels[b, n])
            record = {
                "video": b,
                "segment": segments[b, n].numpy(),
                "label": label,
                "frames": frames.numpy(),
                "gaussians": (
                    self.class_sensitivity.class_parameters(label)
                    if self.class_sensitivity is not None
                    else {}
                ),
            }
            for key in ("p_cls", "p_loc", "q_cls", "q_loc", "h_cls", "h_loc"):
                value = host[key]
                record[key] = None if value is None else value[b, n, frames].numpy()
            records.append(record)
        return records

    def _check_shapes(self, out: NetworkOutput, points: torch.Tensor, batch: Batch) -> None:
        num_points = sum(m.shape[1] for m in out.masks)
        if points.shape[0] != num_points:
            raise ValueError(
                f"ASLObjective: point table has {points.shape[0]} rows but the network "
                f"output has {num_points} points (levels {[m.shape[1] for m in out.masks]})"
            )
        num_classes = out.cls_logits[0].shape[-1]
        if num_classes != self.num_classes:
            raise ValueError(
                f"ASLObjective: logits have {num_classes} classes, objective built for "
                f"{self.num_classes} (videos {batch.video_ids})"
            )
