"""MultiTHUMOS per-class text files → annotation JSON.

    python scripts/convert_multithumos.py --annotations multithumos/annotations \
        --classes multithumos/class_list.txt --durations thumos_14_anno.json \
        --out data/multithumos/annotations.json
"""

from __future__ import annotations

import argparse
import logging

from asl_tal.data.converters import multithumos_to_json, write_annotations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MultiTHUMOS → asl-tal annotation JSON")
    parser.add_argument("--annotations", required=True, help="folder of <ClassName>.txt files")
    parser.add_argument(
        "--durations",
        required=True,
        help="THUMOS14 annotation JSON (database.<video>.duration) or 'video duration' lines",
    )
    parser.add_argument("--classes", help="class list in official order (default: sorted)")
    parser.add_argument("--skip-invalid", action="store_true", help="drop segments end <= start")
    parser.add_argument("--out", required=True, help="output annotations.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = multithumos_to_json(args.annotations, args.durations, args.classes, args.skip_invalid)
    print(write_annotations(data, args.out))


if __name__ == "__main__":
    main()
