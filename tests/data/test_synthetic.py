"""The synthetic benchmark: format, determinism, difficulty, caching and locking."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asl_tal.config_blocks import ConfigValueError, settings_from
from asl_tal.data import synthetic
from asl_tal.data.annotations import load_annotations
from asl_tal.data.synthetic import SyntheticConfig, ensure_synthetic, generate, shipped_config

SMALL = {"num_videos": 12, "dim": 16, "min_length": 40, "max_length": 80, "max_action": 30}


def small(seed: int) -> SyntheticConfig:
    """The shipped generator settings, small: ``SMALL`` and ``seed`` changed."""
    return replace(shipped_config(), seed=seed, **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    paths = [root / "annotations.json", *sorted((root / "features").glob("*.npy"))]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}


@pytest.fixture(scope="module")
def default_root(tmp_path_factory) -> Path:
    return ensure_synthetic(tmp_path_factory.mktemp("synthetic_default"), shipped_config(), False)


@pytest.fixture(scope="module")
def default_db(default_root) -> dict:
    return json.loads((default_root / "annotations.json").read_text())["database"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    generate(tmp_path / "a", small(3))
    generate(tmp_path / "b", small(3))
    generate(tmp_path / "c", small(4))
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert len(a) == 1 + SMALL["num_videos"]
    assert a == b
    assert a["annotations.json"] != c["annotations.json"]


def test_loads_with_load_annotations_and_matches_features(tmp_path):
    cfg = small(0)
    path = generate(tmp_path, cfg)
    videos, class_map = load_annotations(path)
    assert class_map.names == tuple(f"action_{k:02d}" for k in range(cfg.num_classes))
    subsets = [v.subset for v in videos.values()]
    assert (subsets.count("training"), subsets.count("validation"), subsets.count("test")) == (
        8,
        2,
        2,
    )
    raw = json.loads(path.read_text())
    assert raw["generator"]["seed"] == 0
    assert raw["generator"]["params"]["dim"] == 16
    for vid, video in videos.items():
        feats = np.load(tmp_path / "features" / f"{vid}.npy")
        assert feats.dtype == np.float32
        assert feats.shape == (int(video.duration), 16)
        assert video.fps == 1.0
        assert len(video.labels) >= 1
        seg = video.segments
        assert np.all(seg[:, 0] >= 0) and np.all(seg[:, 1] <= video.duration)
        assert np.all(seg[:, 1] - seg[:, 0] >= cfg.min_action)
        for ann in raw["database"][vid]["annotations"]:
            ph = ann["phases"]
            # the three phases tile the segment in order, each at least one step long
            assert ph["start"][0] == ann["segment"][0] and ph["end"][1] == ann["segment"][1]
            assert ph["start"][1] == ph["core"][0] and ph["core"][1] == ph["end"][0]
            assert all(ph[k][1] - ph[k][0] >= 1 for k in ("start", "core", "end"))


def test_default_sizes_lengths_and_overlaps(default_db):
    subsets = [v["subset"] for v in default_db.values()]
    assert (subsets.count("training"), subsets.count("validation"), subsets.count("test")) == (
        240,
        60,
        60,
    )
    durations = np.array([v["duration"] for v in default_db.values()])
    assert durations.min() >= 100 and durations.max() <= 500
    lengths = np.array(
        [a["segment"][1] - a["segment"][0] for v in default_db.values() for a in v["annotations"]]
    )
    assert lengths.min() <= 6, "no short (few-step) actions"
    assert lengths.max() >= 150, "no long (hundreds of steps) actions"
    assert np.mean(lengths < 16) > 0.2 and np.mean(lengths > 64) > 0.1
    overlapping, pairs_same_class, total = 0, 0, 0
    for video in default_db.values():
        segs = [(a["segment"], a["label_id"]) for a in video["annotations"]]
        total += len(segs)
        for i, ((s1, e1), c1) in enumerate(segs):
            for (s2, e2), c2 in segs[i + 1 :]:
                if min(e1, e2) > max(s1, s2):
                    overlapping += 1
                    pairs_same_class += c1 == c2
    assert 0.05 * total < overlapping < 0.3 * total
    assert pairs_same_class == 0
    labels = [a["label_id"] for v in default_db.values() for a in v["annotations"]]
    assert set(labels) == set(range(8))


def _single_cover_frames(root: Path, db: dict, subsets: set[str]):
    """Features, labels and phase index (0 start, 1 core, 2 end) of frames in exactly one GT."""
    xs, ys, phases = [], [], []
    for vid, video in db.items():
        if video["subset"] not in subsets:
            continue
        feats = np.load(root / "features" / f"{vid}.npy")
        cover = np.zeros(len(feats), dtype=int)
        label = np.zeros(len(feats), dtype=int)
        phase = np.zeros(len(feats), dtype=int)
        for ann in video["annotations"]:
            s, e = (int(t) for t in ann["segment"])
            cover[s:e] += 1
            label[s:e] = ann["label_id"]
            for k, name in enumerate(("start", "core", "end")):
                a, b = (int(t) for t in ann["phases"][name])
                phase[a:b] = k
        keep = cover == 1
        xs.append(feats[keep])
        ys.append(label[keep])
        phases.append(phase[keep])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(phases)


def test_nearest_prototype_is_worse_on_transitional_frames(default_root, default_db):
    """Hard where ASL cares: class evidence is weak near boundaries, strong in the core.

    Prototypes = mean training feature per class; frames of validation + test are given
    the class of the nearest prototype (L2). Chance is 1/8.
    """
    x, y, _ = _single_cover_frames(default_root, default_db, {"training"})
    prototypes = np.stack([x[y == c].mean(axis=0) for c in range(8)])
    x, y, phase = _single_cover_frames(default_root, default_db, {"validation", "test"})
    dist = ((x[:, None, :] - prototypes[None]) ** 2).sum(-1)
    correct = dist.argmin(axis=1) == y
    core_acc = correct[phase == 1].mean()
    transitional_acc = correct[phase != 1].mean()
    assert core_acc >= 0.7, f"core frames not learnable enough: {core_acc:.3f}"
    assert core_acc - transitional_acc >= 0.4, (core_acc, transitional_acc)


def test_ensure_does_not_regenerate_when_present(tmp_path, monkeypatch):
    calls = []
    real_generate = synthetic.generate
    monkeypatch.setattr(
        synthetic, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k)
    )
    root = ensure_synthetic(tmp_path / "ds", small(1), False)
    assert root == tmp_path / "ds" and len(calls) == 1
    before = _files(root)
    mtime = (root / "annotations.json").stat().st_mtime_ns
    ensure_synthetic(root, small(1), False)
    assert len(calls) == 1
    assert (root / "annotations.json").stat().st_mtime_ns == mtime
    ensure_synthetic(root, small(2), False)
    assert len(calls) == 2
    assert json.loads((root / "annotations.json").read_text())["generator"]["seed"] == 2
    assert _files(root) != before
    ensure_synthetic(root, small(1), False)
    assert _files(root) == before
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp")] == []


def test_the_shipped_parameters_are_the_documented_benchmark():
    """docs/data.md §6: 360 videos of 100-500 steps, 8 classes, 64-d features, seed 0."""
    cfg = shipped_config()
    assert (cfg.seed, cfg.num_videos, cfg.num_classes, cfg.dim) == (0, 360, 8, 64)
    assert (cfg.min_length, cfg.max_length) == (100, 500)


def test_concurrent_threads_generate_once(tmp_path, monkeypatch):
    calls = []
    real_generate = synthetic.generate
    monkeypatch.setattr(
        synthetic, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k)
    )
    root = tmp_path / "ds"
    threads = [
        threading.Thread(target=ensure_synthetic, args=(root, small(5), False)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    generate(tmp_path / "reference", small(5))
    assert _files(root) == _files(tmp_path / "reference")


@pytest.mark.slow  # two processes at once (each a fresh interpreter): in .ci/run's slow step
def test_concurrent_processes_produce_one_consistent_dataset(tmp_path):
    root = tmp_path / "ds"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=ensure_synthetic, args=(root, small(7), False)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    generate(tmp_path / "reference", small(7))
    assert _files(root) == _files(tmp_path / "reference")
    assert sorted(p.name for p in root.iterdir()) == [
        ".synthetic.lock",
        "annotations.json",
        "features",
    ]


def test_cli_writes_dataset(tmp_path, capsys):
    synthetic.main(
        ["--out", str(tmp_path), "--seed", "2", "--videos", "6", "--classes", "3", "--dim", "8"]
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "annotations.json")
    videos, class_map = load_annotations(tmp_path / "annotations.json")
    assert len(videos) == 6 and class_map.num_classes <= 3
    vid = next(iter(videos))
    assert np.load(tmp_path / "features" / f"{vid}.npy").shape[1] == 8


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_videos": 2}, "dataset.generator.num_videos: must be >= 3, got 2"),
        (
            {"min_length": 6},
            "dataset.generator.min_length: 6 is below twice dataset.generator.min_action = 4",
        ),
        (
            {"max_action": 3},
            "dataset.generator.max_action: 3 is below dataset.generator.min_action = 4",
        ),
    ],
)
def test_generator_values_are_checked_like_every_block(change, message):
    block = {**dataclasses.asdict(shipped_config()), **change}
    with pytest.raises(ConfigValueError) as err:
        settings_from(SyntheticConfig, block, "dataset.generator")
    assert str(err.value) == message
