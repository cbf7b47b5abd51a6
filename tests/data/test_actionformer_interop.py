"""ActionFormer interop: ``file_prefix: ~`` and ``asl-convert actionformer-config``."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import numpy as np
import pytest
from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.cli.convert import main as convert_main
from asl_tal.data.datamodules import DatasetNotFoundError, TALDataModule
from asl_tal.interop import actionformer_config
from asl_tal.interop.actionformer_config import (
    ActionFormerConfigError,
    hydra_overrides,
    override_value,
    translate_actionformer_config,
)

# A THUMOS config in ActionFormer's layout (its configs/thumos_i3d.yaml keys), with values
# chosen to differ from our thumos14 row wherever a key is mapped
AF_THUMOS = """\
dataset_name: thumos
train_split: ['validation']
val_split: ['test']
init_rand_seed: 7
dataset: {
  json_file: ./data/thumos/annotations/thumos14.json,
  feat_folder: ./data/thumos/i3d_features,
  file_prefix: ~,
  file_ext: .npy,
  num_classes: 20,
  input_dim: 2048,
  feat_stride: 4,
  num_frames: 16,
  trunc_thresh: 0.4,
  crop_ratio: [0.8, 1.0],
  max_seq_len: 2304,
}
model: {
  backbone_arch: [2, 2, 5],
  fpn_type: identity,
  max_buffer_len_factor: 6.0,
  n_mha_win_size: 19,
  n_head: 4,
  embd_dim: 256,
  fpn_dim: 256,
  head_dim: 128,
  head_kernel_size: 5,
  regression_range: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]],
}
opt: {
  learning_rate: 0.0002,
  epochs: 35,
  warmup_epochs: 3,
  weight_decay: 0.04,
}
loader: {
  batch_size: 3,
}
train_cfg: {
  init_loss_norm: 90,
  clip_grad_l2norm: 2.0,
  loss_weight: 1.5,
  droppath: 0.2,
}
test_cfg: {
  voting_thresh: 0.7,
  pre_nms_topk: 1500,
  max_seg_num: 150,
  min_score: 0.002,
  iou_threshold: 0.2,
  nms_sigma: 0.6,
  nms_method: hard,
  multiclass_nms: False,
}
output_folder: ./ckpt/
"""


@pytest.fixture
def af_config(tmp_path: Path) -> Path:
    path = tmp_path / "thumos_i3d.yaml"
    path.write_text(AF_THUMOS)
    return path


def resolved(cfg, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def test_null_file_prefix_means_no_prefix(tmp_path, write_json, entry):
    """ActionFormer's ``file_prefix: ~`` reads ``<feat_dir>/<video>.npy``, not ``None<video>``."""
    database = {"video_a": entry("test", 4.0, [("x", 1.0, 2.0)], fps=1.0)}
    json_path = write_json(database)
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "video_a.npy", np.zeros((4, 3), np.float32))
    cfg = compose("train", ["dataset=custom", "dataset.file_prefix=null"])
    node = OmegaConf.to_container(cfg.dataset, resolve=True, throw_on_missing=False)
    node.pop("_target_")
    node.update(
        root=str(tmp_path),
        json_file=json_path.name,
        feat_dir="feats",
        input_dim=3,
        num_classes=1,
        test_subset=["test"],
        preflight=False,
    )
    dm = TALDataModule.from_config(node, 1)
    assert node["file_prefix"] is None
    assert dm.streams[0].path_of("video_a", "test") == tmp_path / "feats" / "video_a.npy"
    assert dm.dataset("test")[0].feats.shape == (3, 4)


def test_mapped_values_land_on_our_keys(af_config):
    t = translate_actionformer_config(af_config)
    assert t.dataset == "thumos14"
    v = t.values
    # paths: the deepest common folder becomes the root, the rest is relative to it
    assert v["dataset.root"] == "data/thumos"
    assert v["dataset.json_file"] == "annotations/thumos14.json"
    assert v["dataset.feat_dir"] == "i3d_features"
    expected = {
        "seed": 7,
        "dataset.file_prefix": None,
        "dataset.train_subset": ["validation"],
        "dataset.val_subset": ["test"],
        "dataset.test_subset": ["test"],
        "dataset.feat_window": 16,
        "dataset.trunc_thresh": 0.4,
        "dataset.crop_ratio": [0.8, 1.0],
        "dataset.max_seq_len": 2304,
        "dataset.fixed_length": None,  # force_upsampling defaults to false: crop
        "dataset.batch_size": 3,
        "model.l1": 2,
        "model.l2": 2,
        "model.l3": 5,
        "model.n_heads": 4,
        "model.d_emb": 256,
        "model.head_width": 128,
        "model.network.attn_window": 19,
        "model.network.attn_window_levels": None,
        "model.network.path_drop": 0.2,
        "model.loss.init_loss_norm": 90,
        "model.loss.loc_weight": 1.5,
        "optimizer.lr": 0.0002,
        "optimizer.weight_decay": 0.04,
        "scheduler.epochs": 35,
        "scheduler.warmup_epochs": 3,
        "trainer.gradient_clip_val": 2.0,
        "postprocess.voting_thresh": 0.7,
        "postprocess.pre_nms_topk": 1500,
        "postprocess.max_seg_num": 150,
        "postprocess.min_score": 0.002,
        "postprocess.iou_threshold": 0.2,
        "postprocess.sigma": 0.6,
        "postprocess.nms_method": "hard",
        "postprocess.class_agnostic": True,
    }
    assert {k: v[k] for k in expected} == expected


def test_keys_without_counterpart_are_listed(af_config):
    unmapped = {key: value for key, value, _ in translate_actionformer_config(af_config).unmapped}
    assert unmapped == {
        "model.fpn_type": "identity",
        "model.max_buffer_len_factor": 6.0,
        "model.fpn_dim": 256,
        "model.head_kernel_size": 5,
        "output_folder": "./ckpt/",
    }


def test_printed_overrides_compose_with_our_configs(af_config, capsys):
    assert convert_main(["actionformer-config", str(af_config)]) == 0
    printed = capsys.readouterr().out
    command = printed.split("ActionFormer keys without")[0]
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "asl-train"
    cfg = compose("train", words[1:])
    assert cfg.dataset.name == "thumos14"
    assert cfg.dataset.file_prefix is None
    assert cfg.dataset.root == "data/thumos"
    assert list(cfg.dataset.crop_ratio) == [0.8, 1.0]
    assert cfg.model.network.n_heads == 4  # the alias model.n_heads reaches the network
    assert cfg.model.network.d_emb == 256
    assert cfg.model.points.regression_ranges[-1] == [64, 10000]
    assert cfg.postprocess.nms_method == "hard"
    assert cfg.trainer.max_epochs == 35 + 3
    assert "model.head_kernel_size = 5" in printed


def test_dataset_config_file_composes(af_config, tmp_path, capsys):
    out = tmp_path / "myconf" / "dataset" / "thumos_af.yaml"
    assert convert_main(["actionformer-config", str(af_config), "--out", str(out)]) == 0
    assert f"--config-dir={tmp_path / 'myconf'}" in capsys.readouterr().out
    cfg = compose(
        "train", [f"hydra.searchpath=[file://{tmp_path / 'myconf'}]", "dataset=thumos_af"]
    )
    assert cfg.dataset.name == "thumos_af"
    assert cfg.dataset.file_prefix is None
    assert cfg.dataset.max_seq_len == 2304
    assert cfg.dataset.input_dim == 2048
    assert cfg.model.network.attn_window == 19
    assert cfg.postprocess.max_seg_num == 150
    assert cfg.evaluation.tiou_thresholds == [0.3, 0.4, 0.5, 0.6, 0.7]  # the thumos14 row


def test_upsampling_and_per_level_windows(tmp_path):
    """ActivityNet's layout: force_upsampling → fixed length; [7]*5 + [-1] → 5 local levels;
    per-stream embedding widths → stream_dims; multistep schedule → fractions."""
    path = tmp_path / "anet.yaml"
    path.write_text(
        "dataset_name: anet\n"
        "dataset: {json_file: /d/anet/annotations/a.json, feat_folder: [/d/anet/f1, /d/anet/f2],"
        " input_dim: [1024, 1024], file_prefix: v_, max_seq_len: 192, force_upsampling: true}\n"
        "model: {n_mha_win_size: [7, 7, 7, 7, 7, -1], embd_dim: [128, 128]}\n"
        "opt: {type: SGD, momentum: 0.8, epochs: 10, schedule_type: multistep,"
        " schedule_steps: [5, 8], schedule_gamma: 0.5}\n"
    )
    t = translate_actionformer_config(path)
    assert t.dataset == "anet_i3d"
    assert t.groups == {"optimizer": "sgd", "scheduler": "warmup_step"}
    v = t.values
    assert v["dataset.root"] == "/d/anet"
    assert v["dataset.feat_dir"] == ["f1", "f2"]
    assert (v["dataset.fixed_length"], v["dataset.crop_after_resample"]) == (192, True)
    assert v["model.network.attn_window"] == 7
    assert v["model.network.attn_window_levels"] == 5
    assert (v["model.d_emb"], v["model.network.stream_dims"]) == (256, [128, 128])
    assert v["scheduler.milestones"] == [0.5, 0.8]
    assert (v["scheduler.gamma"], v["optimizer.momentum"]) == (0.5, 0.8)
    cfg = compose("train", hydra_overrides(t))
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.scheduler._target_ == "asl_tal.optim.warmup_step"


def test_windows_we_cannot_express_are_listed(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("dataset_name: thumos\nmodel: {n_mha_win_size: [9, 7, -1]}\n")
    t = translate_actionformer_config(path)
    assert [key for key, _, _ in t.unmapped] == ["model.n_mha_win_size"]
    assert "model.network.attn_window" not in t.values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        ("", "''"),
        (".npy", ".npy"),
        ("a b", "'a b'"),
        ("null", "'null'"),
        ([[0, 4], [1, 2]], "[[0,4],[1,2]]"),
        (1e-05, "1e-05"),
        (True, "true"),
    ],
)
def test_override_values_follow_hydra_grammar(value, text):
    assert override_value(value) == text


def test_bad_config_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: [1, 2]\n")
    with pytest.raises(ActionFormerConfigError, match=r"bad.yaml: field 'dataset' must be"):
        translate_actionformer_config(path)
    path.write_text("dataset_name: mine\ndataset: {json_file: a.json}\n")
    assert convert_main(["actionformer-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "dataset.feat_folder, dataset.input_dim, dataset.num_classes" in err


def test_missing_folder_message_names_the_override(tmp_path):
    cfg = compose("train", ["dataset=epic_verb", f"paths.data_dir={tmp_path}"])
    node = OmegaConf.to_container(cfg.dataset, resolve=True)
    node.pop("_target_")
    (tmp_path / "epic_kitchens" / "annotations").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as err:
        _ = TALDataModule.from_config(node, 8).class_map
    message = str(err.value)
    # ActionFormer's EPIC folder name is the default; the message names the key to set
    assert f"feature folder {tmp_path / 'epic_kitchens' / 'features'} (dataset.feat_dir)" in message
    assert "(dataset.json_file)" in message


def digest(path: Path) -> tuple[int, str]:
    return path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()


def refused(path: Path, capsys, *words: str) -> str:
    """The one ``error:`` line (exit 2, nothing on stdout) of ``asl-convert actionformer-config
    path``, which leaves the file as it was."""
    before = digest(path)
    assert convert_main(["actionformer-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: "), err[:2000]
    for word in words:
        assert word in err, err
    assert digest(path) == before
    return err


def test_billion_laughs_is_refused_in_one_short_line(tmp_path, capsys):
    # 9 levels of 9 aliases: 9**9 strings "lol" once expanded, from a file of 0.5 KB
    lines = ["dataset_name: mine", "l0: &l0 [" + ", ".join(['"lol"'] * 9) + "]"]
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines.append("dataset: {json_file: a.json, feat_folder: *l8}")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1024
    err = refused(path, capsys, str(path), "YAML aliases expand", "1,000,000 characters")
    assert len(err) < 400


def test_a_recursive_alias_is_refused(tmp_path, capsys):
    path = tmp_path / "loop.yaml"
    path.write_text("dataset_name: mine\ndataset: &d {json_file: a.json, feat_folder: [*d]}\n")
    refused(path, capsys, str(path), "alias refers to a list or mapping that holds it", "line 2")


def test_deeply_nested_yaml_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("dataset_name: mine\nmodel_name: " + "[" * 5000 + "]" * 5000 + "\n")
    refused(path, capsys, str(path), "nested too deeply")


def test_alias_expansion_up_to_the_bound_is_read(tmp_path, monkeypatch):
    # expanded characters (a scalar: its length + 1; a list or mapping: 1 + its items):
    # [ab, ab] = 1 + 3 + 3 = 7; [*x, *x] = 1 + 7 + 7 = 15;
    # the document = 1 + (13 + 7) + (2 + 7) + (2 + 15) = 47
    path = tmp_path / "aliases.yaml"
    path.write_text("dataset_name: thumos\na: &x [ab, ab]\nb: [*x, *x]\n")
    monkeypatch.setattr(actionformer_config, "MAX_EXPANDED_CHARS", 47)
    result = translate_actionformer_config(path)
    unmapped = {key: value for key, value, _ in result.unmapped}
    assert unmapped == {"a": ["ab", "ab"], "b": [["ab", "ab"], ["ab", "ab"]]}
    monkeypatch.setattr(actionformer_config, "MAX_EXPANDED_CHARS", 46)
    with pytest.raises(ActionFormerConfigError, match="more than 46 characters"):
        translate_actionformer_config(path)


def test_huge_values_are_cut_short_in_messages_and_listings(tmp_path, capsys):
    # no alias: a 60 KB list where a path belongs, and a 100,000-character string
    path = tmp_path / "big.yaml"
    path.write_text(
        "dataset_name: thumos\ndataset: {feat_folder: [" + ", ".join(["1"] * 20000) + "]}\n"
    )
    err = refused(path, capsys, str(path), "'dataset.feat_folder' must be a path")
    assert len(err) < 600

    path.write_text("dataset_name: thumos\nmodel_name: " + "x" * 100_000 + "\n")
    assert convert_main(["actionformer-config", str(path)]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "model_name" in line]
    assert line.startswith("  model_name = 'xxx") and "..." in line and len(line) < 400
