"""Ego4D Moment Queries JSONs → annotation JSON keyed by clip uid.

    python scripts/convert_ego4d.py --train moments_train.json --val moments_val.json \
        --out data/ego4d/annotations.json
"""

from __future__ import annotations

import argparse
import logging

from asl_tal.data.converters import ego4d_to_json, write_annotations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Ego4D MQ → asl-tal annotation JSON")
    parser.add_argument("--train", required=True, help="moments_train.json (subset training)")
    parser.add_argument("--val", help="moments_val.json (subset validation)")
    parser.add_argument("--classes", help="class names, one per line (default: sorted labels)")
    parser.add_argument("--fps", type=float, default=30.0, help="clip frame rate (default 30)")
    parser.add_argument("--primary-only", action="store_true", help="keep primary labels only")
    parser.add_argument("--skip-invalid", action="store_true", help="drop labels end <= start")
    parser.add_argument("--out", required=True, help="output annotations.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    json_files = {"training": args.train}
    if args.val:
        json_files["validation"] = args.val
    data = ego4d_to_json(json_files, args.classes, args.fps, args.primary_only, args.skip_invalid)
    print(write_annotations(data, args.out))


if __name__ == "__main__":
    main()
