"""``asl-export CKPT --out model.pt2``: a checkpoint's network and decoding as one portable
``torch.export`` program (docs/deployment.md).

The program (:class:`DeployableDetector`) takes a padded batch and the grid geometry of
each video and returns the pre-NMS candidates in seconds::

    feats (B, D, T) float32, zero on padding    mask (B, T) bool, True on real steps
    fps (B,)  stride (B,)  window (B,) float32  (docs/data.md §3)
    -> segments (B, K, 2) float32 seconds (not clipped), scores (B, K), labels (B, K) int64,
       valid (B, K) bool

``B`` and ``T`` are dynamic; ``T`` must be a multiple of the coarsest pyramid stride
(``required_multiple`` in the artifact's metadata), up to ``--max-length``. Soft-NMS is
data-dependent (selection rounds until each video is done) and stays outside the graph:
:func:`suppress` (or :meth:`ExportedDetector.detect`) runs it and clips to each video's
duration, as ``eval`` / ``predict`` do. The artifact's ``asl_tal.json`` (an extra file of
the ``.pt2`` archive) holds the class names and the post-processing settings that step uses.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from asl_tal.app import user_errors, writing
from asl_tal.checkpoints import load_checkpoint
from asl_tal.detector import ASLDetector
from asl_tal.errors import UserInputError
from asl_tal.outputs import check_output, write_atomically
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.decode import Detections, decode_candidates
from asl_tal.postprocess.nms import batched_nms

METADATA_FILE = "asl_tal.json"
FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH = 16384
INPUT_NAMES = ("feats", "mask", "fps", "stride", "window")
OUTPUT_NAMES = ("segments", "scores", "labels", "valid")


class DeployableDetector(nn.Module):
    """Network + point table + candidate decoding + grid-to-seconds mapping, no NMS.

    Args:
        detector: the (EMA) detector of a checkpoint, in eval mode.
        cfg: post-processing settings; decoding reads ``score_thresh``, ``pre_nms_topk``,
            ``topk_per_level`` and ``duration_thresh`` (they are baked into the graph).
    """

    def __init__(self, detector: ASLDetector, cfg: PostprocessConfig) -> None:
        super().__init__()
        self.network = detector.network
        self.point_generator = detector.point_generator
        self.cfg = cfg

    def forward(
        self,
        feats: torch.Tensor,
        mask: torch.Tensor,
        fps: torch.Tensor,
        stride: torch.Tensor,
        window: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``feats (B, D, T)``, ``mask (B, T)``, ``fps / stride / window (B,)`` -> segments
        ``(B, K, 2)`` in seconds, scores ``(B, K)``, labels ``(B, K)``, valid ``(B, K)``."""
        out = self.network(feats, mask)
        seq_len = feats.shape[-1]
        points = self.point_generator(seq_len, device=feats.device)
        cand = decode_candidates(
            points,
            out.flat_logits().float(),
            out.flat_offsets().float(),
            out.flat_mask(),
            self.cfg,
            level_sizes=self.point_generator.level_sizes(seq_len),
        )
        # VideoMeta.grid_to_seconds with offset 0 (evaluation samples are never cropped)
        seconds = (cand.segments * stride[:, None, None] + 0.5 * window[:, None, None]) / fps[
            :, None, None
        ]
        return seconds, cand.scores, cand.labels, cand.valid


def suppress(
    segments: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    durations: Sequence[float],
    cfg: PostprocessConfig,
) -> list[Detections]:
    """NMS over the program's outputs, then each video's segments clipped to
    ``[0, duration]``: one :class:`Detections` per video (segments float64 seconds)."""
    if len(durations) != scores.shape[0]:
        raise ValueError(f"{len(durations)} durations for a batch of {scores.shape[0]} videos")
    segments, scores, labels, valid = batched_nms(segments, scores, labels, valid, cfg)
    out = []
    for i, duration in enumerate(durations):
        keep = valid[i]
        seconds = segments[i][keep].double().clamp(0.0, float(duration))
        out.append(Detections(seconds, scores[i][keep], labels[i][keep].long()))
    return out


def export_detector(
    detector: ASLDetector, cfg: PostprocessConfig, max_length: int = DEFAULT_MAX_LENGTH
) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`DeployableDetector` with dynamic batch size and length
    (``T = k · required_multiple``, ``T <= max_length``)."""
    multiple = detector.required_multiple
    if max_length < 2 * multiple:
        raise UserInputError(
            f"--max-length {max_length}: must be at least {2 * multiple} (twice the coarsest "
            f"stride {multiple} of this model)"
        )
    module = DeployableDetector(detector, cfg).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    steps = torch.export.Dim("steps", min=1, max=max_length // multiple)
    length = multiple * steps
    # example sizes of at least 2: torch.export fixes dimensions of size 0 or 1
    example_len = 2 * multiple
    feats = torch.zeros(2, sum(detector.network.input_dims), example_len)
    mask = torch.ones(2, example_len, dtype=torch.bool)
    # three distinct tensors: the same tensor passed twice would become one input
    fps, stride, window = torch.ones(2), torch.ones(2), torch.ones(2)
    dynamic = {
        "feats": {0: batch, 2: length},
        "mask": {0: batch, 1: length},
        "fps": {0: batch},
        "stride": {0: batch},
        "window": {0: batch},
    }
    with torch.no_grad():
        return torch.export.export(
            module, (feats, mask, fps, stride, window), dynamic_shapes=dynamic
        )


def export_checkpoint(
    ckpt_path: str | Path, out: str | Path, max_length: int = DEFAULT_MAX_LENGTH
) -> dict:
    """Export the EMA detector of ``ckpt_path`` (post-processing from the checkpoint) to
    ``out`` (``.pt2``); returns the metadata written beside the program. ``out`` is never the
    checkpoint nor an existing file other than an earlier artifact (:func:`is_export_artifact`).
    """
    check_output(
        out,
        "--out",
        [("the checkpoint being exported", ckpt_path)],
        ours=is_export_artifact,
        kind="an asl-export artifact",
    )
    module = load_checkpoint(ckpt_path)
    if module.num_model_classes != len(module.class_names):
        raise UserInputError(
            f"{ckpt_path}: a class-agnostic checkpoint needs video-level class scores to name "
            "its detections; export supports checkpoints that predict the classes themselves"
        )
    detector = module.eval_detector.eval()
    program = export_detector(detector, module.postprocess_cfg, max_length)
    metadata = {
        "format_version": FORMAT_VERSION,
        "source_checkpoint": Path(ckpt_path).name,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "input_dim": sum(detector.network.input_dims),
        "required_multiple": detector.required_multiple,
        "max_length": max_length // detector.required_multiple * detector.required_multiple,
        "class_names": list(module.class_names),
        "postprocess": asdict(module.postprocess_cfg),
    }
    out = Path(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(
            out,
            lambda f: torch.export.save(
                program, f, extra_files={METADATA_FILE: json.dumps(metadata)}
            ),
        )
    return metadata


def is_export_artifact(path: Path) -> bool:
    """True when ``path`` is a ``.pt2`` archive holding :data:`METADATA_FILE` (one that
    :func:`export_checkpoint` wrote)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f"/extra/{METADATA_FILE}") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class ExportedDetector:
    """An exported artifact loaded back: the program, its metadata, and :meth:`detect`.

    Args:
        path: a ``.pt2`` file written by :func:`export_checkpoint`.
    """

    def __init__(self, path: str | Path) -> None:
        extra = {METADATA_FILE: ""}
        self.program = torch.export.load(path, extra_files=extra)
        if not extra[METADATA_FILE]:
            raise UserInputError(f"{path}: not an asl-export artifact (no {METADATA_FILE})")
        self.metadata = json.loads(extra[METADATA_FILE])
        self.postprocess = PostprocessConfig(**self.metadata["postprocess"])
        self.class_names = list(self.metadata["class_names"])
        self._run = self.program.module()

    def candidates(self, feats, mask, fps, stride, window) -> tuple[torch.Tensor, ...]:
        """The program's outputs (see the module docstring) for one padded batch."""
        return tuple(self._run(feats, mask, fps, stride, window))

    def detect(
        self,
        feats: torch.Tensor,
        mask: torch.Tensor,
        fps: torch.Tensor,
        stride: torch.Tensor,
        window: torch.Tensor,
        durations: Sequence[float],
    ) -> list[Detections]:
        """Detections in seconds per video: the program, then :func:`suppress`."""
        return suppress(
            *self.candidates(feats, mask, fps, stride, window), durations, self.postprocess
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="asl-export",
        description="Export a checkpoint's EMA network + decoding to a torch.export program "
        "(.pt2); NMS runs after it (asl_tal.export.suppress). See docs/deployment.md.",
    )
    parser.add_argument("ckpt_path", help="checkpoint (best.ckpt, or one asl-publish wrote)")
    parser.add_argument("--out", required=True, help="the .pt2 file to write")
    parser.add_argument(
        "--max-length",
        type=int,
        default=DEFAULT_MAX_LENGTH,
        help=f"longest padded input T the program accepts (default {DEFAULT_MAX_LENGTH})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        metadata = export_checkpoint(args.ckpt_path, args.out, args.max_length)
    print(
        f"wrote {args.out}: inputs {', '.join(INPUT_NAMES)}; T a multiple of "
        f"{metadata['required_multiple']} up to {metadata['max_length']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
