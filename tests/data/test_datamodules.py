"""DataModules end to end on tiny datasets written in the on-disk format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.data.annotations import AnnotationError
from asl_tal.data.batch import Batch
from asl_tal.data.datamodules import DatasetNotFoundError, SyntheticDataModule, TALDataModule
from asl_tal.settings import ConfigValueError


def dataset_config(name: str, **overrides) -> dict:
    """The ``dataset`` node of ``conf/dataset/<name>.yaml`` (``???`` kept), ``overrides`` on it."""
    cfg = compose("train", overrides=[f"dataset={name}"])
    node = OmegaConf.to_container(cfg.dataset, resolve=True, throw_on_missing=False)
    node.pop("_target_")
    return {**node, **overrides}


@pytest.fixture
def tiny(tiny_dataset, entry):
    database = {
        "t1": entry("Training", 30.0, [("a", 1, 6), ("b", 10, 12), ("b", 20, 30.5)]),
        "t2": entry("training", 20.0, [("c", 2, 9), ("c", 2, 9), ("a", 3, 5)]),
        "t3": entry("training", 10.0, []),
        "v1": entry("validation", 25.0, [("b", 4, 25.4)]),
        "v2": entry("validation", 12.0, [("a", 1, 2)]),
    }
    lengths = {"t1": 150, "t2": 100, "t3": 50, "v1": 125, "v2": 60}
    return tiny_dataset(database, lengths, dim=4)


def make(root, **overrides):
    kwargs = dict(
        json_file="annotations.json",
        feat_dir="features",
        root=str(root),
        input_dim=4,
        num_classes=3,
        train_subset=["training"],
        val_subset=["validation"],
        test_subset=["validation"],
        feat_stride=2,
        feat_window=2,
        max_seq_len=32,
        crop_ratio=[0.9, 1.0],
        batch_size=2,
        eval_batch_size=None,
        num_workers=0,
    )
    kwargs.update(overrides)
    return TALDataModule.from_config(dataset_config("custom", **kwargs), 8)


def test_end_to_end_loaders_and_class_counts(tiny):
    dm = make(tiny)
    assert dm.class_map.names == ("a", "b", "c")
    np.testing.assert_array_equal(dm.train_class_counts, [2, 2, 2])
    dm.setup("fit")
    assert len(dm.dataset("train")) == 2  # t3 has no annotation
    batches = list(dm.train_dataloader())
    assert len(batches) == 1
    batch = batches[0]
    assert isinstance(batch, Batch)
    assert batch.feats.shape == (2, 4, 32) and batch.mask.shape == (2, 32)
    assert batch.labels.shape[1] == batch.segments.shape[1] == batch.seg_mask.shape[1]
    assert bool(((batch.labels >= 0) == batch.seg_mask).all())
    # training windows: 90-100 % of the video length, capped at 32 steps
    assert batch.mask.sum(1).tolist() == [32, 32]

    val = list(dm.val_dataloader())
    assert len(val) == 1
    # whole videos: longest 125 steps rounded up to a multiple of 8
    assert val[0].feats.shape == (2, 4, 128)
    assert val[0].mask.sum(1).tolist() == [125, 60]
    assert val[0].video_ids == ["v1", "v2"]


def test_metric_ground_truth_is_unclipped(tiny):
    dm = make(tiny)
    gt = dm.annotations("val")
    assert list(gt) == ["v1", "v2"]
    np.testing.assert_array_equal(gt["v1"].segments, [[4, 25.4]])
    assert dm.video_index("val") == {"v1": 0, "v2": 1}
    # the training target of v1 is clipped to the duration: (25 * 10 - 1) / 2 = 124.5
    sample = dm.dataset("val")[0]
    np.testing.assert_allclose(sample.segments.numpy(), [[19.5, 124.5]])


def test_num_classes_mismatch(tiny):
    with pytest.raises(ValueError, match="num_classes is 5 but the annotation file has 3"):
        _ = make(tiny, num_classes=5).class_map


def test_missing_dataset_is_one_readable_error(tmp_path):
    dm = TALDataModule.from_config(dataset_config("thumos14", root=str(tmp_path / "nowhere")), 8)
    with pytest.raises(DatasetNotFoundError) as err:
        _ = dm.class_map
    message = str(err.value)
    assert "'thumos14'" in message
    assert f"dataset folder {tmp_path / 'nowhere'}" in message
    assert str(tmp_path / "nowhere" / "annotations" / "thumos14.json") in message
    assert str(tmp_path / "nowhere" / "i3d_features") in message
    assert "ActionFormer" in message
    with pytest.raises(DatasetNotFoundError, match=r"asl-convert multithumos"):
        _ = TALDataModule.from_config(
            dataset_config("multithumos", root=str(tmp_path)), 8
        ).class_map


def test_missing_feature_folder_only(tiny):
    with pytest.raises(DatasetNotFoundError) as err:
        _ = make(tiny, feat_dir=["features", "flow"], input_dim=[4, 2]).class_map
    message = str(err.value)
    assert f"feature folder {tiny / 'flow'}" in message
    assert "annotation file" not in message and "dataset folder" not in message


def test_multi_stream_and_fixed_length(tiny, tiny_dataset, entry):
    database = {
        "x": entry("training", 8.0, [("a", 1, 3)]),
        "y": entry("validation", 8.0, [("a", 2, 3)]),
    }
    root = tiny_dataset(
        database, {"x": 40, "y": 40}, dim=[3, 2], feat_dir=["rgb", "flow"], ext=".pt"
    )
    dm = make(
        root,
        feat_dir=["rgb", "flow"],
        input_dim=[3, 2],
        file_ext=".pt",
        num_classes=1,
        fixed_length=16,
        max_seq_len=16,
    )
    batch = next(iter(dm.val_dataloader()))
    assert batch.feats.shape == (1, 5, 16)
    # stream 1 values are 100 t + c + 0.5 at input position x_j = (j + 0.5) * 40/16 - 0.5
    x = (np.arange(16) + 0.5) * 2.5 - 0.5
    np.testing.assert_allclose(batch.feats[0, 3].numpy(), 100 * x + 0.5, rtol=1e-6)
    # stride' = (39 * 2 + 2) / 16 = 5
    assert batch.meta[0].stride == 5.0


def test_hdf5_per_split(tiny_dataset, entry):
    database = {
        "x": entry("training", 8.0, [("a", 1, 3)]),
        "y": entry("validation", 8.0, [("a", 2, 3)]),
    }
    root = tiny_dataset(database, {"x": 40, "y": 30}, ext=".h5", prefix="v_")
    dm = make(root, file_ext=".h5", file_prefix="v_", num_classes=1)
    assert next(iter(dm.val_dataloader())).mask.sum().item() == 30


def test_video_scores_follow_class_map_order(tiny):
    scores = {"class": ["c", "a", "b"], "results": {"v_v1": [0.7, 0.1, 0.2], "v2": [0, 1, 0]}}
    (tiny / "scores.json").write_text(json.dumps(scores))
    dm = make(tiny, ext_score_file="scores.json", num_classes=1)
    assert dm.class_agnostic and dm.num_model_classes == 1
    np.testing.assert_allclose(dm.video_scores("v1"), [0.1, 0.2, 0.7])
    np.testing.assert_allclose(dm.video_scores("v2"), [1, 0, 0])
    with pytest.raises(AnnotationError, match="video 'nope'"):
        dm.video_scores("nope")
    np.testing.assert_array_equal(dm.train_class_counts, [6])
    sample = dm.dataset("train")[0]
    assert set(sample.labels.tolist()) <= {0}


def test_activitynet_defaults_need_one_class_when_agnostic(tmp_path):
    config = dataset_config("anet_i3d", root=str(tmp_path), ext_score_file="s.json")
    dm = TALDataModule.from_config(config, 8)
    assert dm.class_agnostic
    assert dm.sample_config.fixed_length == 192 and dm.sample_config.crops


def test_synthetic_calls_generator(tmp_path, monkeypatch, tiny_dataset, entry):
    import asl_tal.data.synthetic as synthetic

    calls = []

    def fake(root, cfg, force):
        calls.append((root, cfg.seed, cfg.num_videos, force))
        tiny_dataset({"s": entry("training", 5.0, [("a", 1, 2)], fps=1.0)}, {"s": 5}, dim=64)
        return root

    monkeypatch.setattr(synthetic, "ensure_synthetic", fake)
    config = dataset_config("synthetic", root=str(tmp_path / "dataset"), num_classes=1)
    generator = {**config["generator"], "num_videos": 3}
    dm = SyntheticDataModule.from_config({**config, "generator": generator}, 8)
    dm.prepare_data()
    assert dm.class_map.names == ("a",)
    assert calls[0] == (tmp_path / "dataset", 0, 3, False)
    assert dm.dataset("train")[0].feats.shape == (64, 5)


def test_synthetic_generator_keys_are_checked(tmp_path):
    config = dataset_config("synthetic", root=str(tmp_path / "dataset"))
    generator = {**config["generator"], "videos": 3}
    with pytest.raises(
        ConfigValueError, match=r"^dataset\.generator: unknown dataset\.generator\.videos"
    ):
        SyntheticDataModule.from_config({**config, "generator": generator}, 8)
    assert not (tmp_path / "dataset").exists()


def test_synthetic_end_to_end_with_the_real_generator(tmp_path):
    config = dataset_config("synthetic", root=str(tmp_path / "syn"))
    small = {"num_videos": 12, "min_length": 40, "max_length": 80, "max_action": 30}
    dm = SyntheticDataModule.from_config(
        {**config, "generator": {**config["generator"], **small}}, 32
    )
    dm.prepare_data()
    assert dm.class_map.num_classes == 8
    assert dm.train_class_counts.shape == (8,) and dm.train_class_counts.sum() > 0
    batch = next(iter(dm.train_dataloader()))
    # videos of 40-80 steps: the batch pads to its longest crop rounded up to 32, not to
    # max_seq_len 256 (dataset.train_padding: longest)
    longest = int(batch.mask.sum(1).max())
    assert 40 <= longest <= 80
    assert batch.feats.shape == (4, 64, -(-longest // 32) * 32)
    # synthetic grid: fps 1, stride 1, window 1 -> grid = t - 0.5
    gt = dm.annotations("val")
    video_id = next(iter(gt))
    sample = dm.dataset("val")[dm.video_index("val")[video_id]]
    expected = np.clip(gt[video_id].segments, 0, gt[video_id].duration) - 0.5
    np.testing.assert_allclose(sample.segments.numpy(), expected, rtol=1e-6)


def test_train_loader_with_worker_processes(tiny):
    dm = make(tiny, num_workers=2, persistent_workers=True, batch_size=1)
    offsets = [b.meta[0].offset for _ in range(3) for b in dm.train_dataloader()]
    assert len(offsets) == 6
    assert all(0 <= o <= 150 - 32 for o in offsets)


def test_val_holdout_validates_on_training_videos(tiny):
    # sha256("t1") < sha256("t2") < sha256("t3"), so 1/3 of three holds out t1
    dm = make(tiny, val_holdout=1 / 3)
    dm.setup("fit")
    assert list(dm.annotations("val")) == ["t1"]
    assert [v.video_id for v in dm.dataset("val").videos] == ["t1"]
    assert [v.video_id for v in dm.dataset("train").videos] == ["t2"]  # t3 has no action
    # class counts come from t2 alone: c, c, a
    np.testing.assert_array_equal(dm.train_class_counts, [1, 0, 2])
    assert list(dm.annotations("test")) == ["v1", "v2"]
