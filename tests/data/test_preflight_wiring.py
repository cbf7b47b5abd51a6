"""The feature pre-flight check as TALDataModule runs it: before fit (and test), once per
run, over every subset the run uses; ``dataset.preflight`` and ``dataset.length_mismatch``.

Timing of the tiny dataset: fps 10, stride 2, window 2, so a video of ``d`` seconds holds
``(10 d - 2) / 2 + 1 = 5 d`` steps: 30 s -> 150, 20 s -> 100, 25 s -> 125, 12 s -> 60, each
within tolerance ``max(5 %, 2 + 2 / 2 = 3 steps)`` of its file (the files hold exactly that).
"""

from __future__ import annotations

import logging

import pytest
from asl_tal.conf import compose
from omegaconf import OmegaConf

import asl_tal.data.datamodules as datamodules
from asl_tal.data.annotations import AnnotationError
from asl_tal.data.datamodules import TALDataModule
from asl_tal.data.features import FeatureError
from asl_tal.data.preflight import PreflightError

LENGTHS = {"t1": 150, "t2": 100, "t3": 50, "v1": 125, "x1": 60}


def database(entry, fps: float | None = 10.0) -> dict:
    return {
        "t1": entry("training", 30.0, [("a", 1, 6)], fps=fps),
        "t2": entry("training", 20.0, [("b", 2, 9)], fps=fps),
        "t3": entry("training", 10.0, [], fps=fps),  # no annotation: never read in training
        "v1": entry("validation", 25.0, [("a", 4, 20)], fps=fps),
        "x1": entry("test", 12.0, [("b", 1, 2)], fps=fps),  # only the test subset uses it
    }


def make(root, **overrides) -> TALDataModule:
    cfg = compose("train", overrides=["dataset=custom"])
    node = OmegaConf.to_container(cfg.dataset, resolve=True, throw_on_missing=False)
    node.pop("_target_")
    node.update(
        root=str(root),
        json_file="annotations.json",
        feat_dir="features",
        input_dim=4,
        num_classes=2,
        train_subset=["training"],
        val_subset=["validation"],
        test_subset=["test"],
        feat_stride=2,
        feat_window=2,
        max_seq_len=32,
        num_workers=0,
    )
    return TALDataModule.from_config({**node, **overrides}, 8)


@pytest.fixture
def root(tiny_dataset, entry):
    return tiny_dataset(database(entry), LENGTHS)


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_defaults_are_on_and_error(root):
    dm = make(root)
    assert (dm.cfg.preflight, dm.cfg.length_mismatch) == (True, "error")


def test_a_truncated_test_only_file_stops_setup_fit(root):
    bad = root / "features" / "x1.npy"
    truncate(bad)
    dm = make(root)
    with pytest.raises(PreflightError) as err:
        dm.setup("fit")
    message = str(err.value)
    # .npy header 128 B + 60 x 4 float32 = 128 + 960 = 1088 B; half of it is left
    assert (
        f"{bad}: video 'x1': file: file truncated: header 128 B + 60x4 x 4 B data = 1088 B "
        "expected, found 544 B"
    ) in message
    assert "1 problem(s) (file 1) in 1 of 4 video(s), 4 file(s) checked" in message
    assert [p.video_id for p in err.value.problems] == ["x1"]
    assert isinstance(err.value, FeatureError)  # an app.USER_ERRORS type: "error: ..." + exit 2


def test_fit_checks_the_union_of_the_subsets_once(root, monkeypatch):
    calls = []
    real = datamodules.check_feature_files

    def spy(videos, *args, **kwargs):
        calls.append(sorted(v.video_id for v in videos))
        return real(videos, *args, **kwargs)

    monkeypatch.setattr(datamodules, "check_feature_files", spy)
    dm = make(root)
    dm.setup("fit")
    dm.setup("fit")  # Lightning's own call inside trainer.fit
    dm.setup("test")  # the test after training
    dm.setup("validate")
    # t3 has no annotation, so the training dataset never reads it
    assert calls == [["t1", "t2", "v1", "x1"]]
    assert dm.preflight_report.lengths == {"t1": (150,), "t2": (100,), "v1": (125,), "x1": (60,)}


def test_test_only_run_checks_the_test_subset(root):
    truncate(root / "features" / "t1.npy")  # a training file: not used by a test run
    dm = make(root)
    dm.setup("test")
    assert list(dm.preflight_report.lengths) == ["x1"]
    truncate(root / "features" / "x1.npy")
    with pytest.raises(PreflightError, match=r"x1\.npy: video 'x1': file: file truncated"):
        make(root).setup("test")


def test_preflight_false_skips_the_check(root):
    truncate(root / "features" / "x1.npy")
    dm = make(root, preflight=False)
    dm.setup("fit")
    assert dm.preflight_report is None
    with pytest.raises(FeatureError):  # found only when the loader reaches the file
        dm.dataset("test")[0]


def test_length_mismatch_error_or_warn(tiny_dataset, entry, caplog):
    # v1 (25 s) should hold 125 steps; 100 is off by -25, beyond max(6.25, 3)
    root = tiny_dataset(database(entry), {**LENGTHS, "v1": 100})
    with pytest.raises(PreflightError) as err:
        make(root).setup("fit")
    assert [(p.video_id, p.field) for p in err.value.problems] == [("v1", "length")]
    assert "100 feature steps, expected 125.0" in str(err.value)
    assert "off by -25.0 steps (-20%), tolerance 6.2" in str(err.value)

    dm = make(root, length_mismatch="warn")
    with caplog.at_level(logging.WARNING, logger="asl_tal.data.preflight"):
        dm.setup("fit")
    assert "1 length mismatch(es)" in caplog.text and "video 'v1'" in caplog.text
    assert [p.video_id for p in dm.preflight_report.warnings] == ["v1"]


def test_warn_does_not_downgrade_other_problems(tiny_dataset, entry):
    root = tiny_dataset(database(entry), {**LENGTHS, "v1": 100})
    truncate(root / "features" / "x1.npy")
    with pytest.raises(PreflightError) as err:
        make(root, length_mismatch="warn").setup("fit")
    assert [(p.video_id, p.field) for p in err.value.problems] == [("x1", "file")]


def test_missing_fps_everywhere_is_one_annotation_error(tiny_dataset, entry):
    root = tiny_dataset(database(entry, fps=None), LENGTHS)
    with pytest.raises(AnnotationError) as err:
        make(root).setup("fit")
    assert str(err.value) == (
        f"{root / 'annotations.json'}: video 't1' (and 2 more) has no field 'fps', and "
        "dataset.feat_stride=2 counts frames: give the frame rate as 'fps' of each video in "
        "that file, as dataset.fps=<fps> for every video, or as dataset.default_fps=<fps> "
        "for the videos without one"
    )
    for fix in ({"fps": 10.0}, {"default_fps": 10.0}):
        make(root, **fix).setup("fit")
    make(root, feat_stride=None).setup("fit")  # features per second need no frame rate
