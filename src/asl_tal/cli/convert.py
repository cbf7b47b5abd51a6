"""``asl-convert <command>``: official annotation releases and other tools' files → ours.

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
    asl-convert opentad --annotations thumos_14_anno.json --classes category_idx.txt \
        --block-list missing_files.txt --features features/i3d --out data/thumos_ot/ann.json
    asl-convert actionformer-config configs/thumos_i3d.yaml [--out myconf/dataset/af.yaml]

The work is done by :mod:`asl_tal.interop.releases`, :mod:`asl_tal.interop.opentad` and
:mod:`asl_tal.interop.actionformer_config`; bad input ends as one ``error: ...`` line on
stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from asl_tal.data.annotations import AnnotationError
from asl_tal.data.features import load_array
from asl_tal.errors import UserInputError
from asl_tal.interop.actionformer_config import (
    dataset_config_yaml,
    hydra_overrides,
    override_value,
    shown,
    translate_actionformer_config,
)
from asl_tal.interop.opentad import DROPPED_LABELS, OpenTADFeatures, opentad_to_json
from asl_tal.interop.releases import (
    charades_to_json,
    ego4d_to_json,
    epic_to_json,
    multithumos_to_json,
    write_annotations,
)
from asl_tal.outputs import check_output

log = logging.getLogger(__name__)

# how a header line of every dataset config that actionformer-config writes starts
# (asl_tal.interop.actionformer_config.dataset_config_yaml)
TRANSLATED_MARK = "# asl-convert actionformer-config;"


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


def _command_line(overrides: list[str]) -> str:
    """``asl-train`` with ``overrides``, one per line, quoted for a POSIX shell."""
    return " \\\n    ".join(["asl-train", *(shlex.quote(o) for o in overrides)])


def _opentad_subsets(subsets: set[str]) -> dict[str, list[str]]:
    """Our stage subsets for OpenTAD's names (training / validation / testing)."""
    evaluate = "validation" if "validation" in subsets else "testing"
    chosen = {
        "dataset.train_subset": ["training"],
        "dataset.val_subset": [evaluate],
        "dataset.test_subset": ["testing" if "testing" in subsets else evaluate],
    }
    return {key: names for key, names in chosen.items() if set(names) <= subsets}


def _opentad(a: argparse.Namespace) -> dict:
    dropped = a.drop_label if a.drop_label is not None else list(DROPPED_LABELS)
    result = opentad_to_json(a.annotations, a.classes, a.block_list, dropped, a.skip_invalid)
    for line in result.summary():
        log.info(line)
    out = Path(a.out)
    values: dict[str, object] = {"dataset.root": ".", "dataset.json_file": str(out)}
    if a.features:
        features = OpenTADFeatures(
            Path(a.features), a.feat_format, a.prefix, a.suffix, a.feature_stride, a.offset_frames
        )
        videos = list(result.data["database"])
        missing = features.missing(videos)
        if missing:
            log.warning(
                "%d videos have no feature file in %s (first: %s): add them to the block list",
                len(missing),
                features.folder,
                missing[:5],
            )
        if a.offset_frames == 0:
            log.warning("--offset-frames 0 has no exact counterpart: feat_window = feat_stride")
        values.update(features.overrides())
        present = next((v for v in videos if v not in set(missing)), None)
        if present is not None:
            file = features.folder / f"{features.prefix}{present}{features.file_ext}"
            values["dataset.input_dim"] = int(load_array(file, present).shape[-1])
    # our loader numbers the classes up to the largest label_id the file uses
    ids = [a["label_id"] for v in result.data["database"].values() for a in v["annotations"]]
    values["dataset.num_classes"] = max(ids, default=-1) + 1
    values.update(_opentad_subsets(set(result.subsets)))
    overrides = ["dataset=custom", *(f"{k}={override_value(v)}" for k, v in values.items())]
    log.info("train on it with:\n%s", _command_line(overrides))
    return result.data


def _actionformer_config(a: argparse.Namespace) -> None:
    translation = translate_actionformer_config(a.config, a.base_dir, a.dataset)
    if a.out:
        out = Path(a.out)
        if out.parent.name != "dataset" or out.suffix != ".yaml":
            raise UserInputError(
                f"--out {out}: a dataset config must be <folder>/dataset/<name>.yaml"
            )
        check_output(
            out, "--out", _inputs(a), ours=_is_translated_config, kind="a config it translated"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dataset_config_yaml(translation, out.stem))
        groups = [f"{g}={c}" for g, c in translation.groups.items()]
        print(f"wrote {out}; use it with:")
        print(_command_line([f"--config-dir={out.parent.parent}", f"dataset={out.stem}", *groups]))
    else:
        print(_command_line(hydra_overrides(translation)))
    if translation.unmapped:
        print("ActionFormer keys without a counterpart here (not translated):")
        for key, value, reason in translation.unmapped:
            print(f"  {key} = {shown(value)}: {reason}")


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
    "opentad": (
        "OpenTAD annotation JSON (+ category_idx.txt, missing_files.txt) → asl-tal JSON",
        _opentad,
        [
            ("--annotations", {"required": True, "help": "OpenTAD's annotation JSON"}),
            ("--classes", {"help": "category_idx.txt (default: sorted labels)"}),
            ("--block-list", {"help": "missing_files.txt: videos to leave out"}),
            (
                "--drop-label",
                {
                    "action": "append",
                    "help": "label whose instances are left out, repeatable "
                    "(default: Ambiguous, as OpenTAD's THUMOS loader)",
                },
            ),
            ("--features", {"help": "OpenTAD's feature folder (data_path), to check and print"}),
            ("--feat-format", {"default": "npy", "help": "its feat_format: npy, npz or pt"}),
            ("--prefix", {"default": "", "help": "its LoadFeats prefix"}),
            ("--suffix", {"default": "", "help": "its LoadFeats suffix"}),
            ("--feature-stride", {"type": int, "help": "feature_stride × sample_stride"}),
            ("--offset-frames", {"type": int, "help": "its offset_frames"}),
            ("--skip-invalid", {**_FLAG, "help": "drop segments end <= start"}),
        ],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asl-convert",
        description="Official annotation releases and other tools' files → asl-tal's.",
    )
    commands = parser.add_subparsers(dest="benchmark", required=True, metavar="<benchmark>")
    for name, (description, convert, options) in COMMANDS.items():
        command = commands.add_parser(name, help=description, description=description)
        for flag, kwargs in [*options, _OUT]:
            command.add_argument(flag, **kwargs)
        command.set_defaults(convert=convert)
    description = "ActionFormer YAML config → asl-train overrides or a dataset config"
    command = commands.add_parser("actionformer-config", help=description, description=description)
    command.add_argument("config", help="ActionFormer config, e.g. configs/thumos_i3d.yaml")
    command.add_argument("--out", help="write <folder>/dataset/<name>.yaml instead of overrides")
    command.add_argument(
        "--base-dir",
        help="folder ActionFormer ran in (its paths start there; default: kept relative)",
    )
    command.add_argument(
        "--dataset", help="our dataset config to start from (default: by dataset_name)"
    )
    command.set_defaults(convert=None)
    return parser


def _inputs(a: argparse.Namespace) -> list[tuple[str, str]]:
    """The command's file arguments as ``(what, path)`` pairs for :func:`check_output`."""
    return [
        (f"the input {key if key == 'config' else '--' + key.replace('_', '-')}", value)
        for key, value in vars(a).items()
        if key not in ("out", "convert") and isinstance(value, str)
    ]


def _is_translated_config(path: Path) -> bool:
    """True when ``path`` holds the header of a config ``actionformer-config`` wrote."""
    try:
        head = path.read_text()[:1000]
    except (OSError, ValueError):
        return False
    return f"\n{TRANSLATED_MARK}" in head


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. No ``--out`` replaces an input or an existing file: annotations
    are never written over a file (remove it first), a dataset config only over one that
    ``actionformer-config`` wrote."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.convert is None:
            _actionformer_config(args)
        else:
            check_output(args.out, "--out", _inputs(args))
            print(write_annotations(args.convert(args), args.out))
    except (AnnotationError, UserInputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
