"""Impossible data inputs to the entry points, run in process: a frame rate or duration that
is not a finite number > 0, a video id that leads outside the feature folder, a label that
is ``null``, and a FIFO among the files ``predict`` reads. Each refusal is one ``error:``
line with exit status 2 that names the setting, file or video; no input file changes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.commands import run_command
from helpers.runs import error_line, read_json

from asl_tal.data import feature_folder
from asl_tal.data.feature_folder import find_videos
from asl_tal.data.features import FeatureError, FeatureReader, FeatureStream, hdf5_members

DIM = 64  # the tiny config's feature width


def fingerprint(folder: Path) -> dict[str, tuple[int, str]]:
    """Size and SHA-256 of every regular file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def save_features(path: Path, length: int, dim: int = DIM) -> None:
    np.save(path, np.random.default_rng(length).normal(size=(length, dim)).astype(np.float32))


# --------------------------------------------------------------------------------------
# 1. predict: fps and duration must be finite numbers > 0
@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("fps=-1", "fps=-1"),
        ("fps=0", "fps=0"),
        ("fps=nan", "fps=nan"),
        ("fps=inf", "fps=inf"),
        ("fps=abc", "fps='abc'"),
        ("duration=-5", "duration=-5"),
        ("duration=nan", "duration=nan"),
        ("duration=0", "duration=0"),
        ("dataset.default_fps=-2", "dataset.default_fps=-2"),
    ],
)
def test_predict_refuses_a_frame_rate_or_duration_that_is_not_positive(tmp_path, override, shown):
    folder = tmp_path / "feats"
    folder.mkdir()
    save_features(folder / "clip.npy", 30)
    before = fingerprint(folder)
    out = tmp_path / "pred.json"
    result = run_command(
        "predict",
        "debug=tiny",
        f"hydra.run.dir={tmp_path / 'run'}",
        # never read: the settings are refused before the checkpoint is loaded
        f"ckpt_path={tmp_path / 'none.ckpt'}",
        f"input={folder}",
        f"output={out}",
        override,
        check=False,
    )
    line = error_line(result, shown, "must be a finite number > 0, e.g.")
    assert ("frame rate" in line) == ("fps" in override)
    assert not out.exists()
    assert fingerprint(folder) == before


# --------------------------------------------------------------------------------------
# 2. video ids are file names inside dataset.feat_dir
def custom_overrides(tmp_path: Path, ann: Path, feat_dir: Path) -> list[str]:
    # one batch of a small model should a refusal ever not come (the run then ends at once)
    return [
        "debug=fast_dev_run",
        "dataset=custom",
        f"dataset.json_file={ann}",
        f"dataset.feat_dir={feat_dir}",
        "dataset.input_dim=4",
        "dataset.num_classes=1",
        "dataset.num_workers=0",
        "model.d_emb=16",
        "model.head_width=16",
        "model.n_heads=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]


def video(subset: str, label: object = "jump") -> dict:
    return {
        "subset": subset,
        "duration": 20,
        "fps": 1,
        "annotations": [{"label": label, "segment": [2, 6]}],
    }


@pytest.mark.parametrize("kind", ["parent", "absolute"])
def test_a_video_id_leading_outside_the_feature_folder_is_refused(tmp_path, kind):
    data = tmp_path / "data"
    feats = data / "feats"
    feats.mkdir(parents=True)
    for name in ("a", "b", "c"):
        save_features(feats / f"{name}.npy", 20, dim=4)
    # the file the id would read: beside the feature folder, valid in every respect
    save_features(data / "outside.npy", 20, dim=4)
    outside = "../outside" if kind == "parent" else str(data / "outside")
    ann = data / "annotations.json"
    database = {
        "a": video("training"),
        outside: video("training"),
        "b": video("validation"),
        "c": video("test"),
    }
    ann.write_text(json.dumps({"database": database}))
    before = fingerprint(data)
    result = run_command("train", *custom_overrides(tmp_path, ann, feats), check=False)
    error_line(result, f"video {outside!r}", str(feats), "dataset.feat_dir", "'..'")
    assert fingerprint(data) == before
    assert not (tmp_path / "run" / "class_map.json").exists()


@pytest.mark.parametrize("video_id", ["../x", "sub/../../x", "/etc/hostname", ""])
def test_the_feature_reader_never_opens_a_path_outside_its_folder(tmp_path, video_id):
    reader = FeatureReader([FeatureStream(tmp_path / "feats", 4, ext="")])
    with pytest.raises(FeatureError, match="leads outside the feature folder"):
        reader(video_id, "training")


def test_a_video_id_naming_a_file_in_a_sub_folder_is_read(tmp_path):
    (tmp_path / "feats" / "part1").mkdir(parents=True)
    save_features(tmp_path / "feats" / "part1" / "v.npy", 7, dim=4)
    reader = FeatureReader([FeatureStream(tmp_path / "feats", 4)])
    assert tuple(reader("part1/v", "training").shape) == (4, 7)


# --------------------------------------------------------------------------------------
# 3. a label must be a class name
@pytest.mark.parametrize(("label", "shown"), [(None, "null"), ("", "an empty string")])
def test_a_null_or_empty_label_is_an_annotation_error(tmp_path, label, shown):
    data = tmp_path / "data"
    feats = data / "feats"
    feats.mkdir(parents=True)
    for name in ("a", "b", "c"):
        save_features(feats / f"{name}.npy", 20, dim=4)
    ann = data / "annotations.json"
    database = {"a": video("training"), "b": video("validation", label), "c": video("test")}
    ann.write_text(json.dumps({"database": database}))
    before = fingerprint(data)
    result = run_command("train", *custom_overrides(tmp_path, ann, feats), check=False)
    error_line(result, str(ann), "video 'b'", "annotation 0", "field 'label'", f"got {shown}")
    assert fingerprint(data) == before
    assert not (tmp_path / "run" / "class_map.json").exists()


# --------------------------------------------------------------------------------------
# 4. FIFOs (and other entries that are not regular files) are never opened
@contextlib.contextmanager
def open_for_reading(fifo: Path) -> Iterator[list[bool]]:
    """Yields a list that gets an entry whenever someone opens ``fifo`` for reading.

    A reader blocks in ``open`` until a writer comes, so the watcher sees every reader; it
    then closes its end at once, so the reader gets end-of-file instead of hanging.
    """
    opened: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader has it open
                time.sleep(0.005)
                continue
            opened.append(True)
            os.close(fd)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def hdf5_opened(monkeypatch) -> list[Path]:
    """The files predict opens as HDF5 (a FIFO among them fails the test at once: HDF5
    may open a FIFO more than once and hang where the watcher above cannot free it)."""
    opened: list[Path] = []

    def members(path: Path):
        opened.append(path)
        assert path.is_file(), f"{path} opened as HDF5"
        return hdf5_members(path)

    monkeypatch.setattr(feature_folder, "hdf5_members", members)
    return opened


def test_find_videos_lists_fifos_as_ignored_without_opening_them(tmp_path, hdf5_opened):
    save_features(tmp_path / "good.npy", 30)
    with h5py.File(tmp_path / "good.h5", "w") as h5:
        h5["clip"] = np.zeros((20, DIM), np.float32)
    os.mkfifo(tmp_path / "pipe.h5")
    os.mkfifo(tmp_path / "pipe.npy")
    (tmp_path / "dangling.npy").symlink_to(tmp_path / "nowhere.npy")
    inventory = find_videos(tmp_path)
    assert hdf5_opened == [tmp_path / "good.h5"]
    assert [s.video_id for s in inventory.sources] == ["clip", "good"]
    assert inventory.skipped == []
    ignored = {Path(s.what).name: s.reason for s in inventory.ignored}
    assert ignored == {
        "dangling.npy": "a broken symbolic link; never opened",
        "pipe.h5": "not a regular file (a FIFO); never opened",
        "pipe.npy": "not a regular file (a FIFO); never opened",
    }


def test_predict_skips_a_fifo_in_its_folder_and_writes_the_other_videos(
    trained_run, tmp_path, hdf5_opened
):
    folder = tmp_path / "feats"
    folder.mkdir()
    save_features(folder / "good.npy", 60)
    os.mkfifo(folder / "pipe.h5")
    os.mkfifo(folder / "pipe.npy")
    before = fingerprint(folder)
    out = tmp_path / "pred.json"
    with open_for_reading(folder / "pipe.npy") as opened:
        result = run_command(
            "predict",
            "debug=tiny",
            "trainer.accelerator=cpu",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
            f"input={folder}",
            f"output={out}",
            check=False,
        )
    assert opened == hdf5_opened == []
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert set(read_json(out)["results"]) == {"good"}
    for name in ("pipe.h5", "pipe.npy"):
        (line,) = [line for line in result.stderr.splitlines() if name in line]
        assert "ignored" in line and "not a regular file (a FIFO); never opened" in line
        # the run's log file (Hydra's job logging) holds the warning too
        logged = (tmp_path / "run" / "predict.log").read_text().splitlines()
        (warning,) = [line for line in logged if name in line]
        assert "[WARNING]" in warning and "FIFO" in warning
    assert fingerprint(folder) == before


def test_predict_refuses_an_input_that_is_a_fifo(tmp_path):
    fifo = tmp_path / "features.npy"
    os.mkfifo(fifo)
    out = tmp_path / "pred.json"
    with open_for_reading(fifo) as opened:
        result = run_command(
            "predict",
            "debug=tiny",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"ckpt_path={tmp_path / 'none.ckpt'}",
            f"input={fifo}",
            f"output={out}",
            check=False,
        )
    assert opened == []
    error_line(result, str(fifo), "not a regular file (a FIFO)")
    assert not out.exists()


def test_predict_refuses_an_output_that_is_a_fifo(tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    save_features(folder / "clip.npy", 30)
    before = fingerprint(folder)
    fifo = tmp_path / "pred.json"
    os.mkfifo(fifo)
    with open_for_reading(fifo) as opened:
        result = run_command(
            "predict",
            "debug=tiny",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"ckpt_path={tmp_path / 'none.ckpt'}",
            f"input={folder}",
            f"output={fifo}",
            check=False,
        )
    assert opened == []
    error_line(result, f"output {fifo}", "not a regular file (a FIFO)")
    assert fingerprint(folder) == before
