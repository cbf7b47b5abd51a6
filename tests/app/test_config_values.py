"""Config values of the wrong type or out of range are one ``error:`` line naming the key.

In-process tests of the checks (``asl_tal.config_blocks``, ``check_model_config``, the data
module's), then the hostile-user cases end to end: ``asl-train debug=fast_dev_run
<override>`` (run in this process) exits 2 with the one line, no traceback. The synthetic
model has ``d_emb 64``, ``n_heads 4``, ``l3 5``.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest
from asl_tal.conf import compose
from helpers.commands import Result, run_command
from helpers.model_defaults import model_config
from hydra.utils import get_class
from omegaconf import OmegaConf

from asl_tal.cli.build import check_run_config
from asl_tal.config_blocks import (
    POSITIVE,
    ConfigValueError,
    check_settings,
    describe,
    matches,
    settings_from,
)
from asl_tal.data.datamodules import TALDataModule
from asl_tal.objective.sensitivity import EVALUATOR_MASKS, SENSITIVITY_MODES
from asl_tal.objective.settings import SensitivitySettings, check_model_config

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize(
    "value, hint, ok",
    [
        (3, int, True),
        ("abc", int, False),
        (True, int, False),  # a bool is not a size
        (2.5, int, False),
        (2, float, True),  # YAML writes 1 for 1.0
        (None, float | None, True),
        ([1, 2], int | list[int], True),
        ([1, "x"], int | list[int], False),
        ([0.9, 1.0], tuple[float, float] | None, True),
        ([0.9], tuple[float, float] | None, False),
        ("warn", Literal["error", "warn"], True),
        ("maybe", Literal["error", "warn"], False),
        ("yes", bool, False),
    ],
)
def test_matches(value, hint, ok):
    assert matches(value, hint) is ok


def test_describe():
    assert describe(int) == "an integer"
    assert describe(float | None) == "a number or null"
    assert describe(int | list[int]) == "an integer or a list of integers"
    assert describe(tuple[float, float] | None) == "a list of 2 numbers or null"
    assert describe(Literal["error", "warn"]) == "one of 'error', 'warn'"


@dataclass(frozen=True)
class Block:
    size: int
    ratio: tuple[float, float] | None


def test_settings_from_checks_types_and_makes_tuples():
    assert settings_from(Block, {"size": 2, "ratio": [0.5, 1]}, "demo") == Block(2, (0.5, 1))
    with pytest.raises(ConfigValueError) as err:
        settings_from(Block, {"size": "2", "ratio": None}, "demo")
    assert str(err.value) == "demo.size: expected an integer, got '2'"


def test_check_settings_reads_a_constructor_and_its_declarations():
    def build(*, width: Annotated[int, POSITIVE], mode: Literal["a", "b"]) -> None: ...

    assert check_settings(build, {"width": 3, "mode": "a"}, "demo") == {"width": 3, "mode": "a"}
    with pytest.raises(ConfigValueError, match=r"^demo\.width: expected an integer, got 3\.5$"):
        check_settings(build, {"width": 3.5, "mode": "a"}, "demo")
    with pytest.raises(ConfigValueError, match=r"^demo\.width: must be > 0, got 0$"):
        check_settings(build, {"width": 0, "mode": "a"}, "demo")
    with pytest.raises(ConfigValueError, match=r"^demo: unknown demo\.depth"):
        check_settings(build, {"width": 3, "mode": "a", "depth": 1}, "demo")
    # what the code supplies is no key of the block
    assert check_settings(build, {"width": 3}, "demo", supplied=("mode",)) == {"width": 3}


def test_allowed_values_are_spelled_once():
    """The tuples the code checks against are the ``Literal`` of the settings' field."""
    hints = typing.get_type_hints(SensitivitySettings)
    assert typing.get_args(hints["normalize"]) == SENSITIVITY_MODES == ("none", "mean")
    masks = ("inside_gt", "positives")
    assert typing.get_args(hints["evaluator_mask"]) == EVALUATOR_MASKS == masks


# (block, key, value) -> the message, by hand
MODEL_CASES = [
    ("network", "l1", "abc", "model.network.l1 (alias model.l1): expected an integer, got 'abc'"),
    ("network", "l3", -1, "model.network.l3 (alias model.l3): must be >= 0, got -1"),
    ("network", "d_emb", -8, "model.network.d_emb (alias model.d_emb): must be > 0, got -8"),
    (
        "network",
        "d_emb",
        30,
        "model.network.d_emb (alias model.d_emb): 30 is not a multiple of "
        "model.network.n_heads (alias model.n_heads) = 4",
    ),
    (
        "network",
        "attn_window",
        4,
        "model.network.attn_window: must be a positive odd number, got 4",
    ),
    (
        "sensitivity",
        "normalize",
        "meen",
        "model.sensitivity.normalize: expected one of 'none', 'mean', got 'meen'",
    ),
    (
        "sensitivity",
        "evaluator_layers",
        "two",
        "model.sensitivity.evaluator_layers (alias model.l4): expected an integer, got 'two'",
    ),
    (
        "sensitivity",
        "evaluator_width",
        0,
        "model.sensitivity.evaluator_width: must be > 0, got 0",
    ),
    (
        "sensitivity",
        "gaussian_lr_scale",
        0,
        "model.sensitivity.gaussian_lr_scale: must be > 0, got 0",
    ),
    (
        "sensitivity",
        "loc_sigma_init",
        -1,
        "model.sensitivity.loc_sigma_init: must be > 0, got -1",
    ),
    ("ascl", "k", 0, "model.ascl.k: must be > 0, got 0"),
    ("loss", "label_smoothing", 1.5, "model.loss.label_smoothing: must be in [0, 1], got 1.5"),
    (
        "points",
        "regression_ranges",
        [[0, 4], [4, float("inf")]],
        "model.points.regression_ranges: 2 range(s), but model.network.l3 (alias model.l3) "
        "= 5 makes 6 pyramid levels (one range each)",
    ),
    # `model.ascl.mode=windows` alone would run the prototype with topk mode's queue
    (
        "ascl",
        "mode",
        "windows",
        "model.ascl.mode=windows keeps no memory queue, but model.ascl.memory_size is 512 "
        "(topk mode's): set model.ascl.memory_size=0, and model.ascl.tau=0.07 for the "
        "released prototype's temperature",
    ),
]


@pytest.mark.parametrize("block, key, value, message", MODEL_CASES)
def test_check_model_config(block, key, value, message):
    cfg = model_config("synthetic")
    cfg[block][key] = value
    with pytest.raises(ConfigValueError) as err:
        check_model_config(cfg)
    assert str(err.value) == message


def test_the_windows_prototype_runs_with_its_own_values():
    cfg = model_config("synthetic", ascl={"mode": "windows", "memory_size": 0, "tau": 0.07})
    check_model_config(cfg)


def dataset_node(name: str, *overrides: str) -> dict:
    cfg = compose("train", [f"dataset={name}", *overrides])
    return OmegaConf.to_container(cfg.dataset, resolve=True, throw_on_missing=False)


CUSTOM = ["dataset.json_file=a.json", "dataset.feat_dir=f", "dataset.input_dim=8"]
CUSTOM += ["dataset.num_classes=3"]


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "dataset").glob("[!_]*.yaml")))
def test_every_shipped_config_passes(name):
    overrides = CUSTOM if name == "custom" else []
    cfg = compose("train", [f"dataset={name}", *overrides])
    check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    # the constructor checks every dataset.* value and reads nothing
    node = dataset_node(name, *overrides)
    module = get_class(node.pop("_target_")).from_config(node, 8)
    assert isinstance(module, TALDataModule)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("batch_size", 0, "dataset.batch_size: must be > 0, got 0"),
        ("num_workers", -1, "dataset.num_workers: must be >= 0, got -1"),
        ("feat_stride", "four", "dataset.feat_stride: expected a number or null, got 'four'"),
        ("crop_ratio", [0.5, 2], "dataset.crop_ratio: must be in (0, 1], got [0.5, 2]"),
        ("preflight", "maybe", "dataset.preflight: expected true or false, got 'maybe'"),
        (
            "length_mismatch",
            "ignore",
            "dataset.length_mismatch: expected one of 'error', 'warn', got 'ignore'",
        ),
    ],
)
def test_dataset_values(key, value, message):
    node = dataset_node("custom", *CUSTOM)
    node.pop("_target_")
    with pytest.raises(ConfigValueError) as err:
        TALDataModule.from_config({**node, key: value}, 8)
    assert str(err.value) == message


# ---- end to end: asl-train debug=fast_dev_run <override> ------------------------------------


def run_train(*overrides: str) -> Result:
    """``asl-train overrides...`` (in this process) with W&B off."""
    return run_command("train", *overrides, env={"WANDB_MODE": "disabled"}, check=False)


def error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def assert_user_error(proc, message: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert error_lines(proc) == [f"error: {message}"], proc.stderr[-3000:]


@pytest.mark.parametrize(
    "override, message",
    [
        # model.l3=-1 and model.d_emb=-8 take model.l1=abc's path (test_check_model_config)
        ("model.l1=abc", MODEL_CASES[0][3]),
        ("model.d_emb=30", MODEL_CASES[3][3]),
        ("dataset.batch_size=0", "dataset.batch_size: must be > 0, got 0"),
    ],
)
def test_train_rejects_the_value(override, message, tmp_path):
    data_dir = tmp_path / "data"
    proc = run_train(
        "debug=fast_dev_run",
        override,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_user_error(proc, message)
    assert not data_dir.exists()  # stopped before the synthetic data were even generated


def test_train_without_any_fps(tmp_path):
    """No dataset.fps, no per-video fps, no dataset.default_fps, feat_stride 1."""
    root = tmp_path / "data"
    database = {
        f"{subset}{i}": {
            "subset": subset,
            "duration": 8.0,
            "annotations": [{"label": "a", "segment": [1.0, 3.0]}],
        }
        for subset in ("training", "validation", "test")
        for i in range(2)
    }
    (root / "features").mkdir(parents=True)
    (root / "ann.json").write_text(json.dumps({"database": database}))
    proc = run_train(
        "debug=fast_dev_run",
        "dataset=custom",
        f"dataset.root={root}",
        "dataset.json_file=ann.json",
        "dataset.feat_dir=features",
        "dataset.input_dim=8",
        "dataset.num_classes=1",
        "dataset.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_user_error(
        proc,
        f"{root / 'ann.json'}: video 'training0' (and 1 more) has no field 'fps', and "
        "dataset.feat_stride=1 counts frames: give the frame rate as 'fps' of each video in "
        "that file, as dataset.fps=<fps> for every video, or as dataset.default_fps=<fps> "
        "for the videos without one",
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("scheduler.eta_min=abc", "scheduler.eta_min: expected a number, got 'abc'"),
        ("+scheduler.gamma=0.1", "scheduler: unknown scheduler.gamma"),
        ("callbacks.visualization.dpi=0", "callbacks.visualization.dpi: must be > 0, got 0"),
        (
            "callbacks.model_checkpoint.ties=last",
            "callbacks.model_checkpoint.ties: expected one of",
        ),
        ("optimizer.weight_decay=-1", "optimizer.weight_decay: must be >= 0, got -1"),
    ],
)
def test_the_schedule_and_callbacks_of_ours_are_checked_before_a_run(override, message):
    """Blocks whose ``_target_`` is ours feed what it names, checked like every block; of a
    torch optimizer's block, the keys we declare."""
    cfg = compose("train", ["paths.output_dir=out", override])
    with pytest.raises(ConfigValueError) as err:
        check_run_config(cfg, training=True)
    assert str(err.value).startswith(message)
