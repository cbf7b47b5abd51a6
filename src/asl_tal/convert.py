"""``asl-convert <benchmark>``: official annotation releases → asl-tal annotation JSON.

    asl-convert epic --task verb --train EPIC_100_train.csv \
        --validation EPIC_100_validation.csv --video-info EPIC_100_video_info.csv \
        --classes EPIC_100_verb_classes.csv --out data/epic/annotations_verb.json
    asl-convert ego4d --train moments_train.json --val moments_val.json \
        --out data/ego4d/annotations.json
    asl-convert charades --train Charades_v1_train.csv --test Charades_v1_test.csv \
        --classes Charades_v1_classes.txt --out data/charades/annotations.json
    asl-convert multithumos --annotations multithumos/annotations \
        --classes multithumos/class_list.txt --durations thumos_14_anno.json \
        --out data/multithumos/annotations.json

Also ``python -m asl_tal.convert``. The work is done by :mod:`asl_tal.data.converters`;
bad input ends as one ``error: ...`` line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from asl_tal.data.annotations import AnnotationError
from asl_tal.data.converters import (
    charades_to_json,
    ego4d_to_json,
    epic_to_json,
    multithumos_to_json,
    write_annotations,
)


def _subsets(**paths: str | None) -> dict[str, str]:
    """Subset name → file, leaving out the optional files not given."""
    return {subset: path for subset, path in paths.items() if path}


def _epic(a: argparse.Namespace) -> dict:
    files = _subsets(training=a.train, validation=a.validation)
    return epic_to_json(files, a.video_info, a.task, a.classes, a.skip_invalid)


def _ego4d(a: argparse.Namespace) -> dict:
    files = _subsets(training=a.train, validation=a.val)
    return ego4d_to_json(files, a.classes, a.fps, a.primary_only, a.skip_invalid)


def _charades(a: argparse.Namespace) -> dict:
    files = _subsets(training=a.train, testing=a.test)
    return charades_to_json(files, a.classes, a.skip_invalid)


def _multithumos(a: argparse.Namespace) -> dict:
    return multithumos_to_json(a.annotations, a.durations, a.classes, a.skip_invalid)


_FLAG = {"action": "store_true"}
_OUT = ("--out", {"required": True, "help": "output annotations.json"})
# sub-command → (description, converter, options); every sub-command also takes --out
COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], dict], list[tuple[str, dict]]]] = {
    "epic": (
        "EPIC-Kitchens-100 → asl-tal annotation JSON",
        _epic,
        [
            ("--task", {"required": True, "choices": ("verb", "noun")}),
            ("--train", {"required": True, "help": "EPIC_100_train.csv (subset training)"}),
            ("--validation", {"help": "EPIC_100_validation.csv (subset validation)"}),
            ("--video-info", {"required": True, "help": "EPIC_100_video_info.csv"}),
            ("--classes", {"help": "EPIC_100_<task>_classes.csv (id, key) for names"}),
            ("--skip-invalid", {**_FLAG, "help": "drop segments stop <= start"}),
        ],
    ),
    "ego4d": (
        "Ego4D MQ → asl-tal annotation JSON",
        _ego4d,
        [
            ("--train", {"required": True, "help": "moments_train.json (subset training)"}),
            ("--val", {"help": "moments_val.json (subset validation)"}),
            ("--classes", {"help": "class names, one per line (default: sorted labels)"}),
            ("--fps", {"type": float, "default": 30.0, "help": "clip frame rate (default 30)"}),
            ("--primary-only", {**_FLAG, "help": "keep primary labels only"}),
            ("--skip-invalid", {**_FLAG, "help": "drop labels end <= start"}),
        ],
    ),
    "charades": (
        "Charades → asl-tal annotation JSON",
        _charades,
        [
            ("--train", {"required": True, "help": "Charades_v1_train.csv (subset training)"}),
            ("--test", {"required": True, "help": "Charades_v1_test.csv (subset testing)"}),
            ("--classes", {"required": True, "help": "Charades_v1_classes.txt"}),
            ("--skip-invalid", {**_FLAG, "help": "drop segments end <= start"}),
        ],
    ),
    "multithumos": (
        "MultiTHUMOS → asl-tal annotation JSON",
        _multithumos,
        [
            ("--annotations", {"required": True, "help": "folder of <ClassName>.txt files"}),
            (
                "--durations",
                {
                    "required": True,
                    "help": "THUMOS14 annotation JSON (database.<video>.duration) "
                    "or 'video duration' lines",
                },
            ),
            ("--classes", {"help": "class list in official order (default: sorted)"}),
            ("--skip-invalid", {**_FLAG, "help": "drop segments end <= start"}),
        ],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asl-convert", description="Official annotation releases → asl-tal annotation JSON."
    )
    commands = parser.add_subparsers(dest="benchmark", required=True, metavar="<benchmark>")
    for name, (description, convert, options) in COMMANDS.items():
        command = commands.add_parser(name, help=description, description=description)
        for flag, kwargs in [*options, _OUT]:
            command.add_argument(flag, **kwargs)
        command.set_defaults(convert=convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(write_annotations(args.convert(args), args.out))
    except AnnotationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
