"""``asl-export CKPT --out FILE.pt2``: a checkpoint's detector as a ``torch.export``
program (:mod:`asl_tal.deployment`, whose :class:`~asl_tal.deployment.ExportedDetector`
loads one back)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from asl_tal.cli.user_errors import user_errors
from asl_tal.deployment import DEFAULT_MAX_LENGTH, INPUT_NAMES, export_checkpoint


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="asl-export",
        description="Export a checkpoint's EMA network + decoding to a torch.export program "
        "(.pt2); NMS runs after it (asl_tal.deployment.suppress; the README section "
        '"Everyday commands").',
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
