"""A config value the entry points cannot use is one ``error:`` line and exit status 2,
found where the config is read, before any data is loaded or any result written.

The entry points run in this process (``helpers.commands.run_command``); every message is
written out by hand. ``debug=fast_dev_run`` trains the synthetic benchmark, which would
generate itself under ``paths.data_dir`` on first use: that folder never appearing shows
that no data was loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.commands import run_command
from helpers.runs import error_line

from asl_tal.cli import export

# the range text of the settings' declarations (asl_tal.config_blocks), written out
TRAIN_CASES = {
    "seed=abc": "seed: expected an integer, got 'abc'",
    "optimizer.lr=-1": "optimizer.lr: must be a finite number > 0, got -1",
    "optimizer.lr=nan": "optimizer.lr: must be a finite number > 0, got nan",
    "dataset.val_holdout=1.0": "dataset.val_holdout: must be in [0, 1), got 1.0",
    "callbacks.visualization.every_n_epochs=0": (
        "callbacks.visualization.every_n_epochs: must be > 0, got 0"
    ),
    "evaluation.tiou_thresholds=[]": (
        "evaluation.tiou_thresholds: must list at least one value in (0, 1], got []"
    ),
    "postprocess.max_seg_num=0": "postprocess.max_seg_num: must be > 0, got 0",
    "trainer=gpu": (
        "trainer.accelerator=gpu: torch sees no CUDA GPU on this machine; run on the CPU "
        "with trainer=cpu (or trainer.accelerator=cpu)"
    ),
}


def refusal(command: str, *argv: str) -> str:
    """The message of the one ``error:`` line of ``asl-<command> argv...`` (W&B off): exit
    status 2, no traceback."""
    result = run_command(command, *argv, env={"WANDB_MODE": "disabled"}, check=False)
    return error_line(result).removeprefix("error: ")


def assert_nothing_done(run: Path, data: Path) -> None:
    """No data read (the synthetic set never generated), no checkpoint or result written."""
    assert not data.exists()
    for made in ("checkpoints", "results", "class_map.json", "plots"):
        assert not (run / made).exists()


@pytest.mark.parametrize("override", list(TRAIN_CASES))
def test_train_refuses_the_value_before_any_data(override, tmp_path, monkeypatch):
    # the same answer on a machine with a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run, data = tmp_path / "run", tmp_path / "data"
    message = refusal(
        "train",
        "debug=fast_dev_run",
        f"paths.data_dir={data}",
        f"hydra.run.dir={run}",
        override,
    )
    assert message == TRAIN_CASES[override]
    assert_nothing_done(run, data)


def test_eval_refuses_the_value_before_reading_the_checkpoint(tmp_path):
    message = refusal(
        "eval",
        f"ckpt_path={tmp_path / 'missing.ckpt'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "postprocess.max_seg_num=0",
    )
    assert message == "postprocess.max_seg_num: must be > 0, got 0"


def test_an_unwritable_run_folder(tmp_path):
    """A file where the run folder's parent belongs: Hydra would write its files there."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    data = tmp_path / "data"
    message = refusal(
        "train",
        "debug=fast_dev_run",
        f"paths.data_dir={data}",
        f"hydra.run.dir={blocker / 'run'}",
    )
    assert message == (
        f"cannot write {blocker / 'run'}: Not a directory "
        "(give a writable run directory with hydra.run.dir=...)"
    )
    assert not data.exists()
    assert blocker.read_text() == ""


def test_export_to_an_unwritable_folder_before_reading_the_checkpoint(tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out = blocker / "models" / "model.pt2"
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(tmp_path / "missing.ckpt"), "--out", str(out)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: cannot write {out.parent}: Not a directory "
        "(pass --out a file in a writable folder)"
    ]


def test_predict_without_input(tmp_path):
    message = refusal(
        "predict",
        f"ckpt_path={tmp_path / 'missing.ckpt'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert message == (
        "input=... is required: a feature file (.npy, .npz, .pt, .h5) or a folder of them "
        "(e.g. input=features/)"
    )
    assert not (tmp_path / "run" / "results").exists()


def unannotated_dataset(root: Path, subset: str) -> list[str]:
    """Two videos per subset with one segment each, none in ``subset``; no feature files
    (the check comes before they are read). Returns the custom dataset's overrides."""
    database = {
        f"{name}{i}": {
            "subset": name,
            "duration": 8.0,
            "fps": 1.0,
            "annotations": [] if name == subset else [{"label": "a", "segment": [1.0, 3.0]}],
        }
        for name in ("training", "validation", "test")
        for i in range(2)
    }
    (root / "features").mkdir(parents=True)
    (root / "ann.json").write_text(json.dumps({"database": database}))
    return [
        "dataset=custom",
        f"dataset.root={root}",
        "dataset.json_file=ann.json",
        "dataset.feat_dir=features",
        "dataset.input_dim=8",
        "dataset.num_classes=1",
    ]


@pytest.mark.parametrize(
    "subset, key, extra, fix",
    [
        (
            "validation",
            "val",
            [],
            "pass dataset.val_subset=[<subset with annotations>] or "
            "dataset.val_holdout=<fraction of the training videos>",
        ),
        (
            "test",
            "test",
            ["test_after_fit=true"],
            "pass dataset.test_subset=[<subset with annotations>]",
        ),
    ],
)
def test_a_subset_with_no_annotated_video(subset, key, extra, fix, tmp_path):
    root, run = tmp_path / "data", tmp_path / "run"
    overrides = unannotated_dataset(root, subset)
    message = refusal("train", "debug=fast_dev_run", *overrides, f"hydra.run.dir={run}", *extra)
    stage = "validation" if key == "val" else "test"
    assert message == (
        f"{root / 'ann.json'}: none of the 2 video(s) of dataset.{key}_subset=['{subset}'] has "
        f"an annotated segment, so the {stage} mAP is undefined: {fix}"
    )
    assert not (run / "checkpoints").exists()
