"""Converters from official annotation layouts, checked against hand-written expected JSON."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from helpers.commands import Result, run_command

from asl_tal.cli.convert import main as convert_main
from asl_tal.data.annotations import AnnotationError, load_annotations
from asl_tal.interop.releases import (
    charades_to_json,
    ego4d_to_json,
    epic_to_json,
    multithumos_to_json,
    parse_timestamp,
    write_annotations,
)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _seg(label: str, label_id: int, start: float, end: float) -> dict:
    return {"label": label, "label_id": label_id, "segment": [start, end]}


def _roundtrip_loads(data: dict, tmp_path: Path) -> None:
    """The converted file loads with the project's loader, ids as written."""
    path = write_annotations(data, tmp_path / "out" / "annotations.json")
    videos, class_map = load_annotations(path)
    for video_id, video in data["database"].items():
        ids = [a["label_id"] for a in video["annotations"]]
        assert videos[video_id].labels.tolist() == ids
        assert [class_map.names[i] for i in ids] == [a["label"] for a in video["annotations"]]


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:01:02.50", 62.5), ("01:00:00.00", 3600.0), ("00:00:07.25", 7.25), ("2:03:04", 7384.0)],
)
def test_parse_timestamp(text, seconds):
    assert parse_timestamp(text) == seconds


@pytest.mark.parametrize("text", ["1:02.50", "00:61:00.00", "00:00:xx", ""])
def test_parse_timestamp_rejects(text):
    with pytest.raises(AnnotationError, match="start_timestamp"):
        parse_timestamp(text, "f.csv: line 2", "start_timestamp")


# --------------------------------------------------------------------------- MultiTHUMOS


def _multithumos(tmp_path: Path) -> dict[str, Path]:
    ann = tmp_path / "annotations"
    _write(
        ann / "BaseballPitch.txt", "video_validation_0000051 1.5 3.0\nvideo_test_0000004 0.2 1.1\n"
    )
    _write(ann / "Jump.txt", "video_validation_0000051 2.0 2.6\n\n")
    _write(tmp_path / "class_list.txt", "1 Jump\n2 BaseballPitch\n")
    durations = {
        "database": {
            "video_validation_0000051": {"subset": "Validation", "duration": 10.5, "fps": 30.0},
            "video_test_0000004": {"subset": "Test", "duration": 4.0, "fps": 25.0},
        }
    }
    _write(tmp_path / "thumos.json", json.dumps(durations))
    return {"ann": ann, "classes": tmp_path / "class_list.txt", "json": tmp_path / "thumos.json"}


def test_multithumos(tmp_path):
    p = _multithumos(tmp_path)
    data = multithumos_to_json(p["ann"], p["json"], p["classes"])
    assert data["database"] == {
        "video_test_0000004": {
            "subset": "test",
            "duration": 4.0,
            "annotations": [_seg("BaseballPitch", 1, 0.2, 1.1)],
        },
        "video_validation_0000051": {
            "subset": "validation",
            "duration": 10.5,
            "annotations": [_seg("BaseballPitch", 1, 1.5, 3.0), _seg("Jump", 0, 2.0, 2.6)],
        },
    }
    _roundtrip_loads(data, tmp_path)


def test_multithumos_text_durations_and_default_class_order(tmp_path):
    p = _multithumos(tmp_path)
    durations = _write(
        tmp_path / "durations.txt", "video_validation_0000051 10.5\nvideo_test_0000004 4\n"
    )
    data = multithumos_to_json(p["ann"], durations)
    # without a class list the ids follow sorted file names: BaseballPitch 0, Jump 1
    video = data["database"]["video_validation_0000051"]
    assert video["annotations"] == [_seg("BaseballPitch", 0, 1.5, 3.0), _seg("Jump", 1, 2.0, 2.6)]
    assert data["database"]["video_test_0000004"]["duration"] == 4.0


def test_multithumos_bad_inputs(tmp_path):
    p = _multithumos(tmp_path)
    _write(p["ann"] / "Jump.txt", "video_validation_0000051 2.6 2.0\n")
    with pytest.raises(
        AnnotationError, match=r"Jump\.txt: line 1 video 'video_validation_0000051'"
    ):
        multithumos_to_json(p["ann"], p["json"], p["classes"])
    data = multithumos_to_json(p["ann"], p["json"], p["classes"], skip_invalid=True)
    assert [a["label"] for a in data["database"]["video_validation_0000051"]["annotations"]] == [
        "BaseballPitch"
    ]
    _write(p["ann"] / "Jump.txt", "video_validation_0000099 1 2\n")
    with pytest.raises(AnnotationError, match=r"video_validation_0000099.*'duration'"):
        multithumos_to_json(p["ann"], p["json"], p["classes"])


# --------------------------------------------------------------------------- Charades

CHARADES_HEADER = (
    "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
)


def _charades(tmp_path: Path, train_actions: str = "c002 11.90 21.20;c000 0.00 12.60") -> dict:
    classes = _write(
        tmp_path / "Charades_v1_classes.txt",
        "c000 Holding some clothes\nc001 Putting clothes somewhere\nc002 Taking a towel\n",
    )
    train = _write(
        tmp_path / "Charades_v1_train.csv",
        CHARADES_HEADER
        + f'46GP8,HR43,Kitchen,6,7,Yes,"A person, cooking.",food,"desc",{train_actions},24.83\n'
        + "N11GT,ZUVC,Bedroom,5,7,Yes,script,,desc,,30.5\n",
    )
    test = _write(
        tmp_path / "Charades_v1_test.csv",
        CHARADES_HEADER + "YSKX3,KH6Q,Bathroom,7,7,Yes,s,o,d,c001 3.10 5.00,12.0\n",
    )
    return {"training": train, "testing": test, "classes": classes}


def test_charades(tmp_path):
    p = _charades(tmp_path)
    data = charades_to_json({"training": p["training"], "testing": p["testing"]}, p["classes"])
    assert data["database"] == {
        "46GP8": {
            "subset": "training",
            "duration": 24.83,
            "annotations": [
                _seg("Taking a towel", 2, 11.9, 21.2),
                _seg("Holding some clothes", 0, 0.0, 12.6),
            ],
        },
        "N11GT": {"subset": "training", "duration": 30.5, "annotations": []},
        "YSKX3": {
            "subset": "testing",
            "duration": 12.0,
            "annotations": [_seg("Putting clothes somewhere", 1, 3.1, 5.0)],
        },
    }
    _roundtrip_loads(data, tmp_path)


def test_charades_bad_inputs(tmp_path):
    p = _charades(tmp_path, train_actions="c009 1.0 2.0")
    with pytest.raises(AnnotationError, match=r"train\.csv: line 2 video '46GP8'.*'c009'"):
        charades_to_json({"training": p["training"]}, p["classes"])
    p = _charades(tmp_path, train_actions="c000 5.0 5.0")
    with pytest.raises(AnnotationError, match=r"line 2 video '46GP8'.*'end' \(5.0\) <= 'start'"):
        charades_to_json({"training": p["training"]}, p["classes"])


# --------------------------------------------------------------------------- EPIC-Kitchens-100

EPIC_HEADER = (
    "narration_id,participant_id,video_id,narration_timestamp,start_timestamp,"
    "stop_timestamp,start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,"
    "all_nouns,all_noun_classes\n"
)


def _epic(tmp_path: Path, second_stop: str = "00:01:05.00") -> dict:
    train = _write(
        tmp_path / "EPIC_100_train.csv",
        EPIC_HEADER
        + "P01_01_0,P01,P01_01,00:00:01.089,00:00:02.61,00:00:03.37,156,202,"
        + "open door,open,3,door,8,['door'],[8]\n"
        + f"P01_01_1,P01,P01_01,00:01:00.000,00:01:02.50,{second_stop},3750,3900,"
        + "grab plate,grab,0,plate,2,['plate'],[2]\n"
        + "P01_01_2,P01,P01_01,00:01:10.000,00:01:10.00,00:01:12.25,4200,4335,"
        + "take plate,take,0,plate,2,['plate'],[2]\n"
        + "P01_01_3,P01,P01_01,00:01:20.000,00:01:20.00,00:01:21.00,4800,4860,"
        + "take cup,take,0,cup,5,['cup'],[5]\n",
    )
    validation = _write(
        tmp_path / "EPIC_100_validation.csv",
        EPIC_HEADER
        + "P02_09_0,P02,P02_09,00:00:00.500,01:00:00.00,01:00:01.50,180000,180090,"
        + "open tap,open,3,tap,1,['tap'],[1]\n",
    )
    info = _write(
        tmp_path / "EPIC_100_video_info.csv",
        "video_id,duration,fps,resolution\nP01_01,329.48,50.0,1920x1080\n"
        + "P02_09,3700.25,59.94,1920x1080\n",
    )
    return {"training": train, "validation": validation, "info": info}


def test_epic_verb(tmp_path):
    p = _epic(tmp_path)
    csvs = {"training": p["training"], "validation": p["validation"]}
    data = epic_to_json(csvs, p["info"], "verb")
    # class 0 is "take" (2 rows) rather than "grab" (1 row)
    assert data["database"] == {
        "P01_01": {
            "subset": "training",
            "duration": 329.48,
            "fps": 50.0,
            "annotations": [
                _seg("open", 3, 2.61, 3.37),
                _seg("take", 0, 62.5, 65.0),
                _seg("take", 0, 70.0, 72.25),
                _seg("take", 0, 80.0, 81.0),
            ],
        },
        "P02_09": {
            "subset": "validation",
            "duration": 3700.25,
            "fps": 59.94,
            "annotations": [_seg("open", 3, 3600.0, 3601.5)],
        },
    }
    _roundtrip_loads(data, tmp_path)


def test_epic_noun_with_class_file(tmp_path):
    p = _epic(tmp_path)
    classes = _write(
        tmp_path / "EPIC_100_noun_classes.csv",
        "id,key,instances,category\n1,tap,x,y\n2,plate,x,y\n5,cup,x,y\n8,door,x,y\n",
    )
    data = epic_to_json({"training": p["training"]}, p["info"], "noun", class_names=classes)
    labels = [(a["label"], a["label_id"]) for a in data["database"]["P01_01"]["annotations"]]
    assert labels == [("door", 8), ("plate", 2), ("plate", 2), ("cup", 5)]


def test_epic_bad_inputs(tmp_path):
    p = _epic(tmp_path, second_stop="00:01:02.5x")
    with pytest.raises(AnnotationError, match=r"train\.csv: line 3 video 'P01_01'.*stop_timestamp"):
        epic_to_json({"training": p["training"]}, p["info"], "verb")
    p = _epic(tmp_path, second_stop="00:01:01.00")
    with pytest.raises(AnnotationError, match=r"line 3 video 'P01_01'.*'stop_timestamp'.*<="):
        epic_to_json({"training": p["training"]}, p["info"], "verb")
    _write(p["info"], "video_id,duration,fps\nP01_01,329.48,50.0\n")
    with pytest.raises(
        AnnotationError, match=r"validation\.csv: line 2 video 'P02_09'.*video_info"
    ):
        epic_to_json({"validation": p["validation"]}, p["info"], "verb")


# --------------------------------------------------------------------------- Ego4D MQ


def _label(name: str, start: float, end: float, primary: bool = True) -> dict:
    return {
        "start_time": start,
        "end_time": end,
        "video_start_time": start + 100.0,
        "video_end_time": end + 100.0,
        "label": name,
        "primary": primary,
    }


def _ego4d(tmp_path: Path, bad_end: float = 9.5) -> dict:
    clip_a = {
        "clip_uid": "clip-a",
        "video_start_sec": 100.0,
        "video_end_sec": 580.0,
        "clip_start_sec": 100.0,
        "clip_end_sec": 580.0,
        "annotations": [
            {
                "annotator_uid": "u1",
                "labels": [_label("use_phone", 3.0, bad_end), _label("cut_dough", 1.25, 2.0)],
            },
            {
                "annotator_uid": "u2",
                "labels": [_label("use_phone", 3.0, bad_end, primary=False)],
            },
        ],
    }
    clip_b = {
        "clip_uid": "clip-b",
        "clip_start_sec": 10.5,
        "clip_end_sec": 30.0,
        "annotations": [
            {"annotator_uid": "u3", "labels": [_label("wash_dishes", 0.0, 4.0, primary=False)]}
        ],
    }
    train = {"version": "v1", "videos": [{"video_uid": "vid-1", "clips": [clip_a]}]}
    val = {"version": "v1", "videos": [{"video_uid": "vid-2", "clips": [clip_b]}]}
    return {
        "training": _write(tmp_path / "moments_train.json", json.dumps(train)),
        "validation": _write(tmp_path / "moments_val.json", json.dumps(val)),
    }


def test_ego4d(tmp_path):
    data = ego4d_to_json(_ego4d(tmp_path))
    # sorted labels: cut_dough 0, use_phone 1, wash_dishes 2; u2's duplicate is merged
    assert data["database"] == {
        "clip-a": {
            "subset": "training",
            "duration": 480.0,
            "fps": 30.0,
            "annotations": [
                {**_seg("use_phone", 1, 3.0, 9.5), "primary": True},
                {**_seg("cut_dough", 0, 1.25, 2.0), "primary": True},
            ],
        },
        "clip-b": {
            "subset": "validation",
            "duration": 19.5,
            "fps": 30.0,
            "annotations": [{**_seg("wash_dishes", 2, 0.0, 4.0), "primary": False}],
        },
    }
    _roundtrip_loads(data, tmp_path)


def test_ego4d_class_list_and_primary_only(tmp_path):
    classes = _write(tmp_path / "classes.txt", "wash_dishes\nuse_phone\ncut_dough\nsleep\n")
    data = ego4d_to_json(_ego4d(tmp_path), class_list=classes, fps=None, primary_only=True)
    assert data["database"]["clip-a"]["annotations"] == [
        {**_seg("use_phone", 1, 3.0, 9.5), "primary": True},
        {**_seg("cut_dough", 2, 1.25, 2.0), "primary": True},
    ]
    assert data["database"]["clip-b"] == {
        "subset": "validation",
        "duration": 19.5,
        "annotations": [],
    }


def test_ego4d_bad_inputs(tmp_path, caplog):
    files = _ego4d(tmp_path, bad_end=2.0)
    with pytest.raises(
        AnnotationError,
        match=r"moments_train\.json: clip 'clip-a' annotation 0 label 0: field 'end_time'",
    ):
        ego4d_to_json(files)
    with caplog.at_level(logging.WARNING):
        data = ego4d_to_json(files, skip_invalid=True)
    assert "skipped 2 invalid segment(s)" in caplog.text
    assert [a["label"] for a in data["database"]["clip-a"]["annotations"]] == ["cut_dough"]
    classes = _write(tmp_path / "classes.txt", "use_phone\n")
    with pytest.raises(AnnotationError, match=r"clip 'clip-a' annotation 0 label 1.*'cut_dough'"):
        ego4d_to_json(_ego4d(tmp_path), class_list=classes)


# --------------------------------------------------------------------------- asl-convert


def _convert_command(*args: object) -> Result:
    """``asl-convert ARGS`` (in this process)."""
    return run_command("convert", *map(str, args), check=False)


def test_cli_writes_the_same_json(tmp_path, capsys):
    mt = _multithumos(tmp_path / "mt")
    ch = _charades(tmp_path / "ch")
    ep = _epic(tmp_path / "ep")
    eg = _ego4d(tmp_path / "eg")
    runs = {
        "multithumos": (
            ["--annotations", mt["ann"], "--durations", mt["json"], "--classes", mt["classes"]],
            multithumos_to_json(mt["ann"], mt["json"], mt["classes"]),
        ),
        "charades": (
            ["--train", ch["training"], "--test", ch["testing"], "--classes", ch["classes"]],
            charades_to_json({"training": ch["training"], "testing": ch["testing"]}, ch["classes"]),
        ),
        "epic": (
            [
                *("--task", "noun", "--train", ep["training"]),
                *("--validation", ep["validation"], "--video-info", ep["info"]),
            ],
            epic_to_json(
                {"training": ep["training"], "validation": ep["validation"]}, ep["info"], "noun"
            ),
        ),
        "ego4d": (
            ["--train", eg["training"], "--val", eg["validation"], "--primary-only"],
            ego4d_to_json(eg, primary_only=True),
        ),
    }
    for benchmark, (args, expected) in runs.items():
        out = tmp_path / "out" / f"{benchmark}.json"
        assert convert_main([benchmark, *map(str, args), "--out", str(out)]) == 0, benchmark
        assert capsys.readouterr().out == f"{out}\n", benchmark
        assert json.loads(out.read_text()) == expected, benchmark


def test_cli_passes_the_options_through(tmp_path):
    ch = _charades(tmp_path / "ch", train_actions="c000 5.0 5.0;c002 1.0 2.0")
    out = tmp_path / "charades.json"
    args = ["--train", ch["training"], "--test", ch["testing"], "--classes", ch["classes"]]
    assert convert_main(["charades", *map(str, args), "--skip-invalid", "--out", str(out)]) == 0
    # the empty c000 segment is dropped, c002 ("Taking a towel", line 3 → id 2) kept
    video = json.loads(out.read_text())["database"]["46GP8"]
    assert video["annotations"] == [_seg("Taking a towel", 2, 1.0, 2.0)]

    eg = _ego4d(tmp_path / "eg")
    classes = _write(tmp_path / "classes.txt", "wash_dishes\nuse_phone\ncut_dough\n")
    out = tmp_path / "ego4d.json"
    args = ["--train", eg["training"], "--classes", classes, "--fps", "15", "--out", out]
    assert convert_main(["ego4d", *map(str, args)]) == 0
    database = json.loads(out.read_text())["database"]
    assert list(database) == ["clip-a"]  # no --val: training clips only
    assert database["clip-a"]["fps"] == 15.0
    assert [(a["label"], a["label_id"]) for a in database["clip-a"]["annotations"]] == [
        ("use_phone", 1),
        ("cut_dough", 2),
    ]


def test_cli_help_lists_the_benchmarks():
    proc = _convert_command("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: asl-convert")
    for benchmark in ("epic", "ego4d", "charades", "multithumos"):
        assert re.search(rf"^\s+{benchmark}\b", proc.stdout, re.MULTILINE), benchmark


@pytest.mark.parametrize(
    ("benchmark", "options"),
    [
        ("epic", "--task --train --validation --video-info --classes --skip-invalid --out"),
        ("ego4d", "--train --val --classes --fps --primary-only --skip-invalid --out"),
        ("charades", "--train --test --classes --skip-invalid --out"),
        ("multithumos", "--annotations --durations --classes --skip-invalid --out"),
    ],
)
def test_cli_subcommand_options(benchmark, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_main([benchmark, "--help"])
    assert exit_info.value.code == 0
    options_section = capsys.readouterr().out.split("\noptions:\n")[1]
    listed = re.findall(r"^\s+(?:-h, )?(--[a-z-]+)", options_section, re.MULTILINE)
    assert listed == ["--help", *options.split()]


def test_cli_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["thumos14", "--out", "x.json"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'thumos14'" in capsys.readouterr().err


def test_cli_missing_file_is_one_error_line(tmp_path):
    ep = _epic(tmp_path)
    missing = tmp_path / "EPIC_100_video_info_missing.csv"
    out = tmp_path / "out.json"
    proc = _convert_command(
        *("epic", "--task", "verb", "--train", ep["training"]),
        *("--video-info", missing, "--out", out),
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:")
    assert proc.stderr.count("\n") == 1
    assert "EPIC_100_video_info_missing.csv" in proc.stderr
    assert not out.exists()


def test_cli_malformed_row_is_one_error_line(tmp_path, capsys):
    ch = _charades(tmp_path, train_actions="c009 1.0 2.0")
    out = tmp_path / "out.json"
    args = ["--train", ch["training"], "--test", ch["testing"], "--classes", ch["classes"]]
    assert convert_main(["charades", *map(str, args), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert "Charades_v1_train.csv: line 2 video '46GP8'" in err and "'c009'" in err
    assert not out.exists()
