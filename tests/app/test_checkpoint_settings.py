"""Eval and predict read the data settings a checkpoint was trained with: a custom-data
checkpoint needs nothing but ``ckpt_path`` (and predict's ``input``), from any folder.

The entry points run in this process (``helpers.commands.run_command``); a tiny
training run on data this module writes gives the checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from asl_tal.conf import compose
from helpers.commands import run_command
from omegaconf import OmegaConf

from asl_tal.checkpoints import (
    checkpoint_hparams,
    load_checkpoint,
    run_dataset_name,
    stored_dataset,
    with_checkpoint_settings,
)

WIDTH = 16
CLASSES = ["jump", "run", "sit"]
# a tiny model and schedule: seconds on a CPU
SMALL = [
    "model.d_emb=16",
    "model.n_heads=2",
    "model.head_width=16",
    "model.l2=1",
    "model.l3=2",
    "scheduler.warmup_epochs=1",
    "scheduler.epochs=1",
    "trainer.accelerator=cpu",
    "logger=none",
]


def write_custom_data(root: Path) -> None:
    """Twelve videos of 40-70 one-second steps, 16-wide features, one action each."""
    rng = np.random.default_rng(0)
    database = {}
    for i in range(12):
        subset = ("training", "training", "validation", "test")[i % 4]
        length = 40 + 3 * i
        video_id = f"v{i:02d}"
        np.save(
            root / "features" / f"{video_id}.npy",
            rng.normal(size=(length, WIDTH)).astype(np.float32),
        )
        label = CLASSES[i % 3]
        database[video_id] = {
            "subset": subset,
            "duration": float(length),
            "annotations": [{"label": label, "segment": [5.0, 5.0 + length / 3]}],
        }
    (root / "annotations.json").write_text(json.dumps({"version": "t", "database": database}))


@pytest.fixture(scope="module")
def custom_run(tmp_path_factory) -> Path:
    """A training run on custom data with paths relative to the folder it ran in."""
    work = tmp_path_factory.mktemp("trained_here")
    (work / "my_data" / "features").mkdir(parents=True)
    write_custom_data(work / "my_data")
    run_command(
        "train",
        "dataset=custom",
        "dataset.name=mine",
        "dataset.root=my_data",
        "dataset.json_file=annotations.json",
        "dataset.feat_dir=features",
        f"dataset.input_dim={WIDTH}",
        f"dataset.num_classes={len(CLASSES)}",
        "dataset.default_fps=1.0",
        "dataset.num_workers=0",
        "hydra.run.dir=run",
        *SMALL,
        cwd=work,
    )
    return work / "run"


def only_folder(parent: Path) -> Path:
    (child,) = parent.iterdir()
    return child


def test_the_checkpoint_stores_the_dataset_with_an_absolute_root(custom_run):
    hparams = torch.load(custom_run / "checkpoints" / "best.ckpt", weights_only=True)[
        "hyper_parameters"
    ]
    dataset = hparams["dataset"]
    assert dataset["name"] == "mine"
    assert dataset["root"] == str(custom_run.parent / "my_data")
    assert (dataset["json_file"], dataset["feat_dir"]) == ("annotations.json", "features")
    assert (dataset["input_dim"], dataset["num_classes"]) == (WIDTH, 3)
    assert dataset["test_subset"] == ["test"]


def test_eval_needs_only_the_checkpoint(custom_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # another folder: the relative my_data is not here
    run_command("eval", f"ckpt_path={custom_run / 'checkpoints' / 'best.ckpt'}")
    # the run folder is named after the checkpoint's dataset, not the default (synthetic)
    assert [p.name for p in (tmp_path / "outputs" / "eval").iterdir()] == ["mine"]
    results = only_folder(tmp_path / "outputs" / "eval" / "mine") / "results"
    metrics = json.loads((results / "test_metrics.json").read_text())
    # the checkpoint's classes and its evaluation protocol (the custom row's: THUMOS tIoUs)
    assert set(metrics["per_class_AP"]) == set(CLASSES)
    assert metrics["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    detections = json.loads((results / "test_detections.json").read_text())["results"]
    assert set(detections) == {"v03", "v07", "v11"}  # the test videos (every fourth)


def test_eval_plot_draws_a_timeline_per_test_video(custom_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = custom_run / "checkpoints" / "best.ckpt"
    run_command("eval", f"ckpt_path={ckpt}", "plot=true", "hydra.run.dir=ev")
    plots = sorted(p.name for p in (tmp_path / "ev" / "plots").iterdir())
    assert plots == ["v03.png", "v07.png", "v11.png"]
    assert (tmp_path / "ev" / "plots" / "v03.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_command_line_key_wins_over_the_checkpoint(custom_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = custom_run / "checkpoints" / "best.ckpt"
    run_command(
        "eval",
        f"ckpt_path={ckpt}",
        "dataset.test_subset=[validation]",
        "hydra.run.dir=ev",
    )
    detections = json.loads((tmp_path / "ev" / "results" / "test_detections.json").read_text())
    assert set(detections["results"]) == {"v02", "v06", "v10"}  # the validation videos


def test_predict_needs_only_the_checkpoint_and_input(custom_run, tmp_path, monkeypatch):
    feats = tmp_path / "new_videos"
    feats.mkdir()
    np.save(feats / "clip.npy", np.random.default_rng(1).normal(size=(50, WIDTH)).astype("f4"))
    monkeypatch.chdir(tmp_path)
    ckpt = custom_run / "checkpoints" / "best.ckpt"
    run_command("predict", f"ckpt_path={ckpt}", f"input={feats}")
    assert [p.name for p in (tmp_path / "outputs" / "predict").iterdir()] == ["mine"]
    out = only_folder(tmp_path / "outputs" / "predict" / "mine") / "results" / "predictions.json"
    rows = json.loads(out.read_text())["results"]["clip"]
    assert rows and {row["label"] for row in rows} <= set(CLASSES)
    # one-second steps (the checkpoint's default_fps 1, stride 1): 50 steps last 50 s
    assert all(0.0 <= row["segment"][0] <= row["segment"][1] <= 50.0 for row in rows)


def test_a_width_mismatch_names_the_override_to_pass(custom_run, tmp_path, monkeypatch):
    feats = tmp_path / "wide"
    feats.mkdir()
    np.save(feats / "clip.npy", np.zeros((50, 64), dtype=np.float32))
    monkeypatch.chdir(tmp_path)
    ckpt = custom_run / "checkpoints" / "best.ckpt"
    result = run_command(
        "predict", f"ckpt_path={ckpt}", f"input={feats}", "dataset=synthetic", check=False
    )
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()[-1]
    assert err == (
        f"error: {ckpt}: trained on features of width 16, the current dataset has "
        "dataset.input_dim=64; pass dataset.input_dim=16 with features of that width"
    )


def test_a_checkpoint_without_a_stored_dataset_still_loads(custom_run, tmp_path):
    """Checkpoints written before runs stored their dataset load through the upgrade table
    (eval and predict then use the config's dataset block)."""
    ckpt = torch.load(custom_run / "checkpoints" / "best.ckpt", weights_only=True)
    del ckpt["hyper_parameters"]["dataset"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    assert checkpoint_hparams(old)["dataset"] is None
    assert load_checkpoint(old).class_names == CLASSES


def test_the_command_line_picks_keys_or_whole_blocks():
    overrides = [
        "dataset.batch_size=7",
        "~dataset.default_fps",
        "+dataset.extra=1",
        "postprocess=anet",
    ]
    cfg = compose("eval", ["ckpt_path=x.ckpt", *overrides])
    stored = {"name": "mine", "root": "/data/mine", "batch_size": 2, "default_fps": 30.0}
    hparams = {
        "dataset": stored,
        "postprocess": {"iou_threshold": 0.123},
        "evaluation": {"tiou_thresholds": [0.5]},
    }
    out = with_checkpoint_settings(cfg, hparams, overrides)
    # the checkpoint's block with the three keys the command line gave
    assert dict(out.dataset) == {"name": "mine", "root": "/data/mine", "batch_size": 7, "extra": 1}
    # postprocess=anet: the config file's block, not the checkpoint's
    assert out.postprocess == compose("eval", ["ckpt_path=x.ckpt", "postprocess=anet"]).postprocess
    assert list(out.evaluation) == ["tiou_thresholds"] and out.evaluation.tiou_thresholds == [0.5]
    assert stored == {"name": "mine", "root": "/data/mine", "batch_size": 2, "default_fps": 30.0}


@pytest.mark.parametrize(
    ("stored_name", "overrides", "expected"),
    [
        ("mine", [], "mine"),
        ("mine", ["dataset=thumos14"], "configured"),  # the command line named the dataset
        ("mine", ["dataset.name=other"], "configured"),
        ("../../elsewhere", [], "configured"),  # a folder name, never a path
        (None, [], "configured"),  # nothing stored
    ],
)
def test_the_run_folder_name(tmp_path, stored_name, overrides, expected):
    path = tmp_path / "x.ckpt"
    dataset = None if stored_name is None else {"name": stored_name}
    torch.save({"hyper_parameters": {"dataset": dataset}, "state_dict": {}}, path)
    assert run_dataset_name(str(path), "configured", overrides) == expected
    assert run_dataset_name(str(tmp_path / "missing.ckpt"), "configured", []) == "configured"


@pytest.mark.parametrize(
    ("fps", "default_fps", "training_fps", "stored_default"),
    [
        (None, None, {7.5}, 7.5),  # one rate among the training videos: predict reads at it
        (None, None, {7.5, 30.0}, None),  # several: predict must be told (fps=...)
        (None, None, {7.5, None}, None),  # a video without one
        (None, 25.0, {7.5}, 25.0),  # the config's default stays
        (10.0, None, {7.5}, None),  # a fixed rate for every video needs no default
    ],
)
def test_the_stored_dataset_keeps_the_training_videos_one_frame_rate(
    fps, default_fps, training_fps, stored_default
):
    cfg = OmegaConf.create(
        {"dataset": {"root": "data/x", "fps": fps, "default_fps": default_fps, "name": "x"}}
    )
    block = stored_dataset(cfg, training_fps)
    assert block["default_fps"] == stored_default
    assert block["fps"] == fps
    assert block["root"] == os.path.abspath("data/x")
