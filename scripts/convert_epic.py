"""EPIC-Kitchens-100 CSVs → annotation JSON (verb or noun classes).

    python scripts/convert_epic.py --task verb --train EPIC_100_train.csv \
        --validation EPIC_100_validation.csv --video-info EPIC_100_video_info.csv \
        --classes EPIC_100_verb_classes.csv --out data/epic/annotations_verb.json
"""

from __future__ import annotations

import argparse
import logging

from asl_tal.data.converters import epic_to_json, write_annotations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="EPIC-Kitchens-100 → asl-tal annotation JSON")
    parser.add_argument("--task", required=True, choices=("verb", "noun"))
    parser.add_argument("--train", required=True, help="EPIC_100_train.csv (subset training)")
    parser.add_argument("--validation", help="EPIC_100_validation.csv (subset validation)")
    parser.add_argument("--video-info", required=True, help="EPIC_100_video_info.csv")
    parser.add_argument("--classes", help="EPIC_100_<task>_classes.csv (id, key) for names")
    parser.add_argument("--skip-invalid", action="store_true", help="drop segments stop <= start")
    parser.add_argument("--out", required=True, help="output annotations.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    csv_files = {"training": args.train}
    if args.validation:
        csv_files["validation"] = args.validation
    data = epic_to_json(csv_files, args.video_info, args.task, args.classes, args.skip_invalid)
    print(write_annotations(data, args.out))


if __name__ == "__main__":
    main()
