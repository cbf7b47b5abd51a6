"""``asl-publish CKPT --out model.ckpt``: a checkpoint cut to what evaluation needs.

The published file holds the hyper-parameters (today's layout; the class map is their
``class_names``), the state dict with the EMA weights stored once (``detector.*`` shares the
``ema.module.*`` tensors, :func:`asl_tal.lit_module.share_evaluation_weights`; the loss
normaliser and other buffers included), and the epoch / step / Lightning version it came
from. No optimizer, scheduler, callback or loop state: it loads in ``eval`` and ``predict``
(and ``asl-export``), not as a training run to resume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from asl_tal.app import user_errors, writing
from asl_tal.checkpoints import load_checkpoint, local_checkpoint_path, read_checkpoint
from asl_tal.errors import UserInputError
from asl_tal.lit_module import share_evaluation_weights
from asl_tal.outputs import check_output, write_atomically

# provenance keys of a Lightning checkpoint that a published one keeps
PROVENANCE_KEYS = ("epoch", "global_step", "pytorch-lightning_version")


def publish_checkpoint(ckpt_path: str | Path, out: str | Path) -> Path:
    """Write the evaluation-only copy of ``ckpt_path`` to ``out`` (never over the source nor
    over an existing file other than an earlier published checkpoint); the source is first
    loaded as ``eval`` loads it, so a broken file fails here."""
    source = local_checkpoint_path(ckpt_path)
    out = Path(out)
    check_output(
        out,
        "--out",
        [("the checkpoint being published", source)],
        ours=is_published_checkpoint,
        kind="a checkpoint asl-publish wrote",
    )
    module = load_checkpoint(source)
    ckpt = read_checkpoint(source)
    published = {key: ckpt[key] for key in PROVENANCE_KEYS if key in ckpt}
    published["hyper_parameters"] = dict(module.hparams)
    published["state_dict"] = share_evaluation_weights(module.state_dict())
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, lambda f: torch.save(published, f))
    return out


def is_published_checkpoint(path: Path) -> bool:
    """True when ``path`` is a checkpoint holding only what :func:`publish_checkpoint` keeps."""
    try:
        ckpt = read_checkpoint(path)
    except (UserInputError, FileNotFoundError):
        return False
    return set(ckpt) <= {*PROVENANCE_KEYS, "hyper_parameters", "state_dict"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="asl-publish",
        description="Copy a checkpoint with only what evaluation needs: EMA weights, "
        'hyper-parameters, class map, loss normaliser (the README section "Everyday commands").',
    )
    parser.add_argument("ckpt_path", help="checkpoint to publish (best.ckpt or last.ckpt)")
    parser.add_argument("--out", required=True, help="the published .ckpt file to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors():
        out = publish_checkpoint(args.ckpt_path, args.out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
