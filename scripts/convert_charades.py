"""Charades CSVs → annotation JSON.

    python scripts/convert_charades.py --train Charades_v1_train.csv \
        --test Charades_v1_test.csv --classes Charades_v1_classes.txt \
        --out data/charades/annotations.json
"""

from __future__ import annotations

import argparse
import logging

from asl_tal.data.converters import charades_to_json, write_annotations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Charades → asl-tal annotation JSON")
    parser.add_argument("--train", required=True, help="Charades_v1_train.csv (subset training)")
    parser.add_argument("--test", required=True, help="Charades_v1_test.csv (subset testing)")
    parser.add_argument("--classes", required=True, help="Charades_v1_classes.txt")
    parser.add_argument("--skip-invalid", action="store_true", help="drop segments end <= start")
    parser.add_argument("--out", required=True, help="output annotations.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    csv_files = {"training": args.train, "testing": args.test}
    data = charades_to_json(csv_files, args.classes, args.skip_invalid)
    print(write_annotations(data, args.out))


if __name__ == "__main__":
    main()
