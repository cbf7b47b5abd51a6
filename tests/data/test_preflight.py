"""Feature pre-flight check: header-only reads of every format, every problem in one error.

Expected lengths by hand, ``(duration * fps - window) / stride + 1`` (THUMOS timing, stride
4, window 16, fps 30): 80 s -> (2400 - 16) / 4 + 1 = 597 steps, tolerance
max(5 % x 597, 2 + 16 / 4) = 29.85 steps; 2 s -> (60 - 16) / 4 + 1 = 12 steps, tolerance
max(0.6, 6) = 6 steps; 10 s -> (300 - 16) / 4 + 1 = 72 steps.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers.features import save_features
from helpers.model_defaults import sample_config

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.features import FeatureError, FeatureStream
from asl_tal.data.preflight import (
    LengthTolerance,
    PreflightError,
    check_feature_files,
    expected_num_feats,
)

THUMOS = sample_config(feat_stride=4, feat_window=16)
DIM = 8


def video(video_id: str, duration: float = 80.0, fps: float | None = 30.0, subset="test"):
    return VideoAnnotation(
        video_id, subset, duration, fps, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    )


def write(path: Path, length: int, dim: int = DIM, key: str | None = None, dtype="float32"):
    """A ``(length, dim)`` file of ones in ``path``'s format (HDF5: dataset ``key``)."""
    save_features(path, np.ones((length, dim), dtype=dtype), key)


def truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


def problems_of(videos, streams, config=THUMOS, **kwargs):
    with pytest.raises(PreflightError) as err:
        check_feature_files(videos, streams, config, **kwargs)
    return err.value


def test_expected_length_by_hand():
    assert expected_num_feats(80.0, 30.0, 4.0, 16.0) == 597.0
    assert expected_num_feats(2.0, 30.0, 4.0, 16.0) == 12.0
    assert expected_num_feats(10.0, 30.0, 4.0, 16.0) == 72.0
    # stride = window = 1 at 1 fps (the synthetic benchmark): one step per second
    assert expected_num_feats(365.0, 1.0, 1.0, 1.0) == 365.0
    # shorter than one window: still one (padded) step
    assert expected_num_feats(0.1, 30.0, 4.0, 16.0) == 1.0
    tol = LengthTolerance()
    assert tol.margin(597.0, 4.0, 16.0) == pytest.approx(29.85)
    assert tol.margin(12.0, 4.0, 16.0) == 6.0


@pytest.mark.parametrize("ext", [".npy", ".npz", ".pt", ".h5"])
def test_clean_set_passes(tmp_path, ext):
    videos = {"a": video("a", 80.0), "b": video("b", 2.0, subset="validation")}
    for vid, length in (("a", 597), ("b", 12)):
        if ext == ".h5":
            write(tmp_path / f"{videos[vid].subset}.h5", length, key=f"p_{vid}")
        else:
            write(tmp_path / f"p_{vid}{ext}", length)
    report = check_feature_files(videos, [FeatureStream(tmp_path, DIM, "p_", ext)], THUMOS)
    assert (report.num_videos, report.num_files, report.warnings) == (2, 2, ())
    assert report.lengths == {"a": (597,), "b": (12,)}


def test_clean_multi_stream_mixed_formats(tmp_path):
    write(tmp_path / "s1" / "a.npy", 597, dim=4)
    write(tmp_path / "s2" / "a.pt", 596, dim=6)  # one step shorter: allowed
    write(tmp_path / "s3" / "all.h5", 597, dim=2, key="a")
    streams = [
        FeatureStream(tmp_path / "s1", 4),
        FeatureStream(tmp_path / "s2", 6, ext=".pt"),
        FeatureStream(tmp_path / "s3", 2, ext=".h5", hdf5_file="all.h5"),
    ]
    report = check_feature_files([video("a")], streams, THUMOS)
    assert report.lengths == {"a": (597, 596, 597)}
    assert report.num_files == 3


def test_four_problems_in_one_message(tmp_path):
    write(tmp_path / "trunc.npy", 597)
    truncate(tmp_path / "trunc.npy")
    write(tmp_path / "wide.npy", 597, dim=DIM + 1)
    write(tmp_path / "short.npy", 72)  # 10 s of an 80 s video
    videos = [video(v) for v in ("trunc", "wide", "short", "missing", "good")]
    write(tmp_path / "good.npy", 597)
    err = problems_of(videos, [FeatureStream(tmp_path, DIM)])
    assert [(p.video_id, p.field) for p in err.problems] == [
        ("trunc", "file"),
        ("wide", "input_dim"),
        ("short", "length"),
        ("missing", "file"),
    ]
    message = str(err)
    assert "4 problem(s)" in message and "in 4 of 5 video(s)" in message
    assert f"{tmp_path / 'trunc.npy'}: video 'trunc': file: file truncated" in message
    assert f"{tmp_path / 'wide.npy'}: video 'wide': input_dim: expected width 8, got 9" in message
    assert f"{tmp_path / 'short.npy'}: video 'short': length: 72 feature steps, expected 597.0" in (
        message
    )
    assert f"{tmp_path / 'missing.npy'}: video 'missing': file: not found" in message
    assert "good" not in message
    assert isinstance(err, FeatureError) and isinstance(err, ValueError)


def test_tolerance_boundaries(tmp_path):
    # 80 s: 597 +- 29.85 -> 568 and 626 pass, 567 and 627 fail;
    # 2 s: 12 +- 6 -> 6 and 18 pass, 5 and 19 fail
    cases = {"l568": (80, 568), "l626": (80, 626), "s6": (2, 6), "s18": (2, 18)}
    bad = {"l567": (80, 567), "l627": (80, 627), "s5": (2, 5), "s19": (2, 19)}
    for vid, (_, length) in {**cases, **bad}.items():
        write(tmp_path / f"{vid}.npy", length)
    stream = [FeatureStream(tmp_path, DIM)]
    check_feature_files([video(v, d) for v, (d, _) in cases.items()], stream, THUMOS)
    err = problems_of([video(v, d) for v, (d, _) in bad.items()], stream)
    assert [(p.video_id, p.field) for p in err.problems] == [(v, "length") for v in bad]
    assert "off by -30.0 steps (-5%), tolerance 29.9" in str(err)
    # a tighter tolerance rejects what the default allowed
    err = problems_of(
        [video("l568")], stream, tolerance=LengthTolerance(relative=0.01, absolute=0.0)
    )
    assert err.problems[0].field == "length"


def test_length_mismatch_as_warning(tmp_path, caplog):
    write(tmp_path / "short.npy", 72)
    write(tmp_path / "good.npy", 597)
    stream = [FeatureStream(tmp_path, DIM)]
    with caplog.at_level(logging.WARNING, logger="asl_tal.data.preflight"):
        report = check_feature_files(
            [video("short"), video("good")], stream, THUMOS, lengths_as_warnings=True
        )
    assert [(p.video_id, p.field) for p in report.warnings] == [("short", "length")]
    assert "1 length mismatch(es)" in caplog.text and "video 'short'" in caplog.text
    assert report.lengths == {"short": (72,), "good": (597,)}
    # other problems still raise; the length one is only logged
    write(tmp_path / "wide.npy", 597, dim=3)
    err = problems_of([video("short"), video("wide")], stream, lengths_as_warnings=True)
    assert [p.video_id for p in err.problems] == ["wide"]


def test_first_twenty_then_and_n_more(tmp_path):
    (tmp_path / "f").mkdir()
    videos = [video(f"v{i:02d}") for i in range(27)]
    err = problems_of(videos, [FeatureStream(tmp_path / "f", DIM)])
    assert len(err.problems) == 27
    lines = str(err).splitlines()
    listed = [line for line in lines if ": file: not found" in line]
    assert [line.split("'")[1] for line in listed] == [f"v{i:02d}" for i in range(20)]
    assert lines[-1].strip() == "... and 7 more"
    assert "27 problem(s) (file 27) in 27 of 27 video(s)" in lines[0]


def test_streams_must_agree_within_one_step(tmp_path):
    write(tmp_path / "s1" / "a.npy", 597)
    write(tmp_path / "s2" / "a.npy", 595)
    streams = [FeatureStream(tmp_path / "s1", DIM), FeatureStream(tmp_path / "s2", DIM)]
    err = problems_of([video("a")], streams)
    (problem,) = err.problems
    assert (problem.video_id, problem.field) == ("a", "streams")
    assert "differ by 2 steps" in problem.detail and "T=595" in problem.detail
    report = check_feature_files([video("a")], streams, THUMOS, lengths_as_warnings=True)
    assert [p.field for p in report.warnings] == ["streams"]


def test_features_per_second_skip_the_length_check(tmp_path):
    write(tmp_path / "a.npy", 5)
    per_second = sample_config(feat_stride=None, feat_window=None)
    report = check_feature_files(
        [video("a", 80.0, fps=None)], [FeatureStream(tmp_path, DIM)], per_second
    )
    assert report.lengths == {"a": (5,)}


def test_fps_resolution_follows_video_meta(tmp_path):
    write(tmp_path / "a.npy", 597)  # right for 30 fps
    stream = [FeatureStream(tmp_path, DIM)]
    # the JSON's fps wins over default_fps; an fps override wins over the JSON
    json_first = sample_config(default_fps=25.0, feat_stride=4, feat_window=16)
    check_feature_files([video("a", fps=30.0)], stream, json_first)
    default = sample_config(default_fps=30.0, feat_stride=4, feat_window=16)
    check_feature_files([video("a", fps=None)], stream, default)
    override = sample_config(fps=25.0, default_fps=30.0, feat_stride=4, feat_window=16)
    err = problems_of([video("a", fps=30.0)], stream, override)
    assert "expected 497.0" in str(err)  # (80 * 25 - 16) / 4 + 1
    err = problems_of([video("a", fps=None)], stream, THUMOS)
    assert (err.problems[0].field, err.problems[0].path) == ("fps", None)


def test_shape_dtype_and_member_problems(tmp_path):
    np.save(tmp_path / "int.npy", np.ones((597, DIM), np.int32))
    np.save(tmp_path / "flat.npy", np.ones(597, np.float32))
    np.save(tmp_path / "empty.npy", np.ones((0, DIM), np.float32))
    np.savez(tmp_path / "nokey.npz", other=np.ones((597, DIM), np.float32))
    write(tmp_path / "split.h5", 597, key="present")
    cases = [
        (FeatureStream(tmp_path, DIM), "int", "dtype"),
        (FeatureStream(tmp_path, DIM), "flat", "shape"),
        (FeatureStream(tmp_path, DIM), "empty", "shape"),
        (FeatureStream(tmp_path, DIM, ext=".npz"), "nokey", "key"),
        (FeatureStream(tmp_path, DIM, ext=".h5", hdf5_file="split.h5"), "absent", "key"),
    ]
    for stream, vid, field in cases:
        err = problems_of([video(vid)], [stream])
        assert [(p.video_id, p.field) for p in err.problems] == [(vid, field)], str(err)
    assert "other" in str(problems_of([video("nokey")], [cases[3][0]]))


@pytest.mark.parametrize("ext", [".npz", ".pt", ".h5"])
def test_truncated_archives(tmp_path, ext):
    path = tmp_path / f"training{ext}" if ext == ".h5" else tmp_path / f"a{ext}"
    write(path, 597, key="a")
    truncate(path)
    err = problems_of([video("a", subset="training")], [FeatureStream(tmp_path, DIM, ext=ext)])
    assert [(p.video_id, p.field) for p in err.problems] == [("a", "file")]
    assert "cannot read header" in str(err)


def test_npy_longer_than_its_header(tmp_path):
    write(tmp_path / "a.npy", 597)
    with open(tmp_path / "a.npy", "ab") as f:
        f.write(b"\0" * 4)
    err = problems_of([video("a")], [FeatureStream(tmp_path, DIM)])
    assert "longer than its header says" in str(err)


def test_pt_dict_and_legacy_format(tmp_path):
    torch.save({"feats": torch.ones(597, DIM)}, tmp_path / "d.pt")
    torch.save(torch.ones(597, DIM), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    torch.save(torch.ones(597, DIM, dtype=torch.bfloat16), tmp_path / "bf.pt")
    torch.save({"x": 1}, tmp_path / "bad.pt")
    stream = [FeatureStream(tmp_path, DIM, ext=".pt")]
    report = check_feature_files([video("d"), video("old"), video("bf")], stream, THUMOS)
    assert report.lengths == {"d": (597,), "old": (597,), "bf": (597,)}
    err = problems_of([video("bad")], stream)
    assert "expected a tensor, got dict" in str(err)


def test_missing_folder_is_one_problem(tmp_path):
    write(tmp_path / "ok" / "a.npy", 597)
    streams = [FeatureStream(tmp_path / "ok", DIM), FeatureStream(tmp_path / "gone", DIM)]
    err = problems_of([video("a"), video("b")], streams)
    assert [(p.path, p.field) for p in err.problems] == [
        (tmp_path / "gone", "feat_dir"),
        (tmp_path / "ok" / "b.npy", "file"),
    ]


def test_video_in_two_subsets_checked_once(tmp_path):
    write(tmp_path / "a.npy", 597)
    a = video("a")
    report = check_feature_files({"a": a}, [FeatureStream(tmp_path, DIM)], THUMOS)
    assert report.num_files == 1
    report = check_feature_files([a, a], [FeatureStream(tmp_path, DIM)], THUMOS)
    assert (report.num_videos, report.num_files) == (1, 1)


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


def test_header_only_huge_sparse_npy(tmp_path):
    # 1 GiB of (sparse) data behind the header: a full read would take seconds
    steps = 2**30 // (DIM * 4)
    np.lib.format.open_memmap(tmp_path / "huge.npy", "w+", np.float32, (steps, DIM)).flush()
    duration = ((steps - 1) * 4 + 16) / 30  # exactly `steps` windows
    stream = [FeatureStream(tmp_path, DIM)]
    start = time.perf_counter()
    report = check_feature_files([video("huge", duration)], stream, THUMOS)
    assert time.perf_counter() - start < 0.5
    assert report.lengths == {"huge": (steps,)}


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_header_only_reads_for_every_format(tmp_path, monkeypatch):
    # 4 MB of data per file; far less than that may be read in all
    length, dim = 2000, 512
    write(tmp_path / "a.npy", length, dim)
    write(tmp_path / "a.npz", length, dim)
    write(tmp_path / "a.pt", length, dim)
    write(tmp_path / "test.h5", length, dim, key="a")
    duration = ((length - 1) * 4 + 16) / 30

    def forbidden(*args, **kwargs):
        raise AssertionError("full-array loader called")

    real_torch_load = torch.load

    def mmap_only_load(*args, **kwargs):
        assert kwargs.get("mmap") is True
        return real_torch_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", forbidden)
    monkeypatch.setattr(np, "fromfile", forbidden)
    monkeypatch.setattr(torch, "load", mmap_only_load)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", forbidden)
    monkeypatch.setattr(h5py.Dataset, "read_direct", forbidden)
    for ext in (".npy", ".npz", ".pt", ".h5"):
        before = _rchar()
        report = check_feature_files(
            [video("a", duration)], [FeatureStream(tmp_path, dim, ext=ext)], THUMOS
        )
        read = _rchar() - before
        assert report.lengths == {"a": (length,)}
        assert read < 256 * 1024, (ext, read)
