"""``asl-convert opentad``: OpenTAD's annotation and feature layout → ours."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from asl_tal.cli.convert import main as convert_main
from asl_tal.data.annotations import AnnotationError, load_annotations
from asl_tal.interop.opentad import OpenTADFeatures, opentad_to_json

# OpenTAD's THUMOS layout: subsets training / validation, a frame count, no fps, no label_id
DATABASE = {
    "video_validation_1": {
        "subset": "training",
        "duration": 20.0,
        "frame": 600,
        "annotations": [
            {"segment": [1.0, 3.5], "label": "PoleVault"},
            {"segment": [4.0, 6.0], "label": "Ambiguous"},
            {"segment": [8.0, 9.0], "label": "BaseballPitch"},
            {"segment": [8.0004, 9.0], "label": "BaseballPitch"},  # repeat within 1 ms
        ],
    },
    "video_test_1": {
        "subset": "validation",
        "duration": 10.0,
        "frame": 250,
        "annotations": [{"segment": [2.0, 5.0], "label": "PoleVault"}],
    },
    "video_test_2": {
        "subset": "validation",
        "duration": 8.0,
        "frame": 200,
        "annotations": [{"segment": [0.5, 1.0], "label": "Ambiguous"}],
    },
    "video_test_missing": {"subset": "validation", "duration": 5.0, "frame": 125},
}
# OpenTAD's class map: line order is the class id (not alphabetical here on purpose)
CLASSES = "PoleVault\nBaseballPitch\nCliffDiving\n"


@pytest.fixture
def opentad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "annotations": tmp_path / "thumos_14_anno.json",
        "classes": tmp_path / "category_idx.txt",
        "block_list": tmp_path / "missing_files.txt",
    }
    files["annotations"].write_text(json.dumps({"database": DATABASE}))
    files["classes"].write_text(CLASSES)
    files["block_list"].write_text("video_test_missing\nvideo_not_in_file\n")
    return files


def test_conversion_matches_hand_worked_output(opentad_files):
    result = opentad_to_json(
        opentad_files["annotations"], opentad_files["classes"], opentad_files["block_list"]
    )
    assert result.data["database"] == {
        "video_validation_1": {
            "subset": "training",
            "duration": 20.0,
            "fps": 30.0,  # 600 frames / 20 s
            "annotations": [
                {"label": "PoleVault", "label_id": 0, "segment": [1.0, 3.5]},
                {"label": "BaseballPitch", "label_id": 1, "segment": [8.0, 9.0]},
            ],
        },
        "video_test_1": {
            "subset": "validation",
            "duration": 10.0,
            "fps": 25.0,  # 250 / 10
            "annotations": [{"label": "PoleVault", "label_id": 0, "segment": [2.0, 5.0]}],
        },
        "video_test_2": {"subset": "validation", "duration": 8.0, "fps": 25.0, "annotations": []},
    }
    assert result.class_names == ["PoleVault", "BaseballPitch", "CliffDiving"]
    assert result.blocked == ["video_test_missing"]
    assert result.blocked_absent == ["video_not_in_file"]
    assert result.dropped == {"Ambiguous": 2}
    assert result.duplicates == 1
    assert result.subsets == {"training": 1, "validation": 2}
    summary = "\n".join(result.summary())
    assert "3 videos (1 training, 2 validation), 3 classes" in summary
    assert "video_test_missing" in summary


def test_output_loads_with_our_loader(opentad_files, tmp_path):
    out = tmp_path / "ours.json"
    args = ["opentad", "--annotations", str(opentad_files["annotations"])]
    args += ["--classes", str(opentad_files["classes"]), "--out", str(out)]
    assert convert_main(args) == 0
    videos, class_map = load_annotations(out, ["validation"])
    # ids from the class file; CliffDiving (id 2) has no instance, so the map stops at 1
    assert list(class_map.names) == ["PoleVault", "BaseballPitch"]
    assert sorted(videos) == ["video_test_1", "video_test_2", "video_test_missing"]
    assert videos["video_test_1"].fps == 25.0


def test_without_class_file_labels_are_sorted_less_the_dropped(opentad_files):
    result = opentad_to_json(opentad_files["annotations"])
    assert result.class_names == ["BaseballPitch", "PoleVault"]
    first = result.data["database"]["video_validation_1"]["annotations"][0]
    assert (first["label"], first["label_id"]) == ("PoleVault", 1)


def test_features_and_printed_overrides(opentad_files, tmp_path, caplog):
    feats = tmp_path / "i3d"
    feats.mkdir()
    for video in ("video_validation_1", "video_test_1"):
        np.save(feats / f"{video}_rgb.npy", np.zeros((6, 5), np.float32))
    out = tmp_path / "ours.json"
    args = ["opentad", "--annotations", str(opentad_files["annotations"])]
    args += ["--classes", str(opentad_files["classes"])]
    args += ["--block-list", str(opentad_files["block_list"]), "--out", str(out)]
    args += ["--features", str(feats), "--suffix", "_rgb", "--feature-stride", "4"]
    args += ["--offset-frames", "8"]
    with caplog.at_level("INFO"):
        assert convert_main(args) == 0
    assert "video_test_2" in caplog.text  # no feature file: named in the warning
    command = caplog.text.split("train on it with:")[1].replace("\\\n", " ")
    words = shlex.split(command)
    assert words[:2] == ["asl-train", "dataset=custom"]
    values = dict(w.split("=", 1) for w in words[2:])
    assert values["dataset.json_file"] == str(out)
    assert values["dataset.feat_dir"] == str(feats)
    assert values["dataset.file_ext"] == "_rgb.npy"
    assert values["dataset.input_dim"] == "5"
    assert values["dataset.num_classes"] == "2"  # what our loader counts (ids 0 and 1)
    assert values["dataset.feat_stride"] == "4"
    assert values["dataset.feat_window"] == "16"  # features centred at 8 + 4 g frames
    assert values["dataset.train_subset"] == "[training]"
    assert values["dataset.val_subset"] == values["dataset.test_subset"] == "[validation]"


@pytest.mark.parametrize(
    ("video", "message"),
    [
        (
            {"subset": "training", "duration": 0, "frame": 10},
            r"video 'v': field 'duration' must be > 0",
        ),
        (
            {"subset": "training", "duration": 5, "frame": "x"},
            r"video 'v': field 'frame' must be a number",
        ),
        ({"duration": 5}, r"video 'v': field 'subset'"),
        (
            {
                "subset": "training",
                "duration": 5,
                "annotations": [{"segment": [1, 2], "label": "Nope"}],
            },
            r"video 'v': annotation 0: field 'label' 'Nope' is not in .*category_idx.txt",
        ),
        (
            {
                "subset": "training",
                "duration": 5,
                "annotations": [{"segment": [1], "label": "PoleVault"}],
            },
            r"video 'v': annotation 0: field 'segment' must be \[start, end\]",
        ),
        (
            {
                "subset": "training",
                "duration": 5,
                "annotations": [{"segment": [3, 2], "label": "PoleVault"}],
            },
            r"video 'v': annotation 0: field 'segment\[1\]' \(2.0\) <= 'segment\[0\]'",
        ),
    ],
)
def test_malformed_input_is_one_line_naming_file_video_field(tmp_path, capsys, video, message):
    path = tmp_path / "anno.json"
    path.write_text(json.dumps({"database": {"v": video}}))
    classes = tmp_path / "category_idx.txt"
    classes.write_text(CLASSES)
    with pytest.raises(AnnotationError, match=message) as err:
        opentad_to_json(path, classes)
    assert str(err.value).startswith(str(path))
    code = convert_main(
        [
            "opentad",
            "--annotations",
            str(path),
            "--classes",
            str(classes),
            "--out",
            str(tmp_path / "o.json"),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_class_file_problems(tmp_path):
    path = tmp_path / "category_idx.txt"
    path.write_text("A\n\nB\n")
    with pytest.raises(AnnotationError, match=r"category_idx.txt: line 2 is empty"):
        opentad_to_json(_write_db(tmp_path), path)
    path.write_text("A\nA\n")
    with pytest.raises(AnnotationError, match=r"class 'A' is listed more than once"):
        opentad_to_json(_write_db(tmp_path), path)


def test_unreadable_feature_format_is_refused(tmp_path):
    with pytest.raises(AnnotationError, match=r"feature format 'csv' is not read here"):
        OpenTADFeatures(tmp_path, "csv")


def _write_db(tmp_path: Path) -> Path:
    path = tmp_path / "db.json"
    path.write_text(json.dumps({"database": {}}))
    return path
