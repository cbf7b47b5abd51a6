"""Every dataset and experiment config composes, and carries its row of the paper's tables."""

import math
from pathlib import Path

import pytest
from asl_tal.conf import compose
from helpers.commands import run_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from asl_tal.detector import ASLDetector

CONF = Path(__file__).resolve().parents[2] / "conf"
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("[!_]*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

# docs/data.md §1: (D, fixed length or None, max_seq_len, bs, lr, epochs, wd, l1..l4, heads, d, C)
ROWS = {
    "thumos14": (2048, None, 1024, 2, 1e-4, 30, 0.05, (1, 2, 5, 2), 8, 512, 20),
    "anet_i3d": (2048, 192, 192, 16, 1e-3, 13, 0.01, (1, 2, 5, 2), 4, 256, 200),
    "anet_tsp": (512, 192, 192, 16, 1e-3, 13, 0.01, (1, 2, 5, 2), 4, 256, 200),
    "epic_verb": (2304, 1024, 1024, 2, 1e-4, 15, 0.05, (1, 2, 5, 2), 8, 512, 97),
    "epic_noun": (2304, 1024, 1024, 2, 1e-4, 20, 0.05, (1, 2, 5, 2), 8, 512, 300),
    "ego4d_mq": ([256, 2304, 1536], 1024, 1024, 2, 1e-4, 10, 0.05, (2, 3, 8, 2), 8, 512, 110),
    "multithumos": (1024, 1024, 1024, 2, 2e-4, 60, 0.05, (1, 2, 5, 2), 8, 512, 65),
    "charades": (1024, 512, 512, 32, 4e-4, 15, 0.05, (1, 2, 5, 2), 8, 512, 157),
    "synthetic": (64, None, 256, 4, 1e-3, 18, 0.05, (1, 2, 5, 2), 4, 64, 8),
}
CUSTOM_REQUIRED = [
    "dataset.json_file=a.json",
    "dataset.feat_dir=feats",
    "dataset.input_dim=16",
    "dataset.num_classes=3",
]


def compose_train(overrides: list[str]):
    return compose("train", overrides)


def resolved(cfg, key):
    return OmegaConf.to_container(cfg[key], resolve=True)


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_config_composes(name):
    overrides = [f"dataset={name}"] + (CUSTOM_REQUIRED if name == "custom" else [])
    cfg = compose_train(overrides)
    dataset, model = resolved(cfg, "dataset"), resolved(cfg, "model")
    assert dataset["name"] == name
    assert model["network"]["input_dim"] == dataset["input_dim"]
    assert model["network"]["max_seq_len"] == dataset["max_seq_len"]
    assert len(model["points"]["regression_ranges"]) == model["l3"] + 1


@pytest.mark.parametrize("name", sorted(ROWS))
def test_dataset_config_matches_its_table_row(name):
    dim, fixed, max_len, bs, lr, epochs, wd, layers, heads, width, classes = ROWS[name]
    cfg = compose_train([f"dataset={name}"])
    dataset, model = resolved(cfg, "dataset"), resolved(cfg, "model")
    assert dataset["input_dim"] == dim
    assert dataset["fixed_length"] == fixed
    assert dataset["max_seq_len"] == max_len
    assert dataset["batch_size"] == bs
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert cfg.optimizer.weight_decay == pytest.approx(wd)
    assert cfg.scheduler.epochs == epochs
    assert (model["l1"], model["l2"], model["l3"], model["l4"]) == layers
    assert (model["n_heads"], model["d_emb"]) == (heads, width)
    assert dataset["num_classes"] == classes
    # epochs exclude warm-up: the trainer runs both
    assert cfg.trainer.max_epochs == epochs + cfg.scheduler.warmup_epochs


def test_ego4d_has_nine_levels_and_three_streams():
    cfg = compose_train(["dataset=ego4d_mq"])
    model = resolved(cfg, "model")
    assert model["l3"] + 1 == 9 == len(model["points"]["regression_ranges"])
    assert sum(model["network"]["stream_dims"]) == model["d_emb"]
    assert cfg.evaluation.recall_topk == [1, 5]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_composes(name):
    overrides = [f"experiment={name}"]
    if name.startswith("anet"):
        overrides.append("dataset.ext_score_file=scores.json")
    cfg = compose_train(overrides)
    assert resolved(cfg, "model")["sensitivity"]


@pytest.mark.parametrize(
    ("name", "class_level", "instance_level", "ascl_weight"),
    [
        ("thumos_baseline", False, False, 0.0),
        ("thumos_inst", False, True, 0.0),
        ("thumos_class", True, False, 0.0),
        ("thumos_asl", True, True, 0.0),
        ("thumos_asl_ascl", True, True, None),
    ],
)
def test_table_c_rows(name, class_level, instance_level, ascl_weight):
    """The rows switch ASCL off, or (``None``) keep the model config's own ASCL block."""
    cfg = compose_train([f"experiment={name}"])
    assert cfg.dataset.name == "thumos14"
    assert cfg.model.sensitivity.class_level is class_level
    assert cfg.model.sensitivity.instance_level is instance_level
    if ascl_weight is None:
        assert cfg.model.ascl == compose_train([]).model.ascl
        assert cfg.model.ascl.weight > 0
    else:
        assert cfg.model.ascl.weight == pytest.approx(ascl_weight)


def test_cfg_job_shows_every_value():
    """``python -m asl_tal.train --cfg job``: the values that run, none left to the code."""
    shown = OmegaConf.create(run_module("asl_tal.train", "--cfg", "job").stdout)
    assert (shown.model.ascl.memory_size, shown.model.ascl.tau) == (512, 0.1)
    assert None not in OmegaConf.to_container(shown.model.ascl).values()
    # ActionFormer's ranges, written as the rule over model.l3 that gives them
    points = OmegaConf.to_container(shown.model.points)
    assert points == {"regression_ranges": "${doubling_ranges:${..network.l3}}"}


def test_the_doubling_ranges_follow_l3():
    for l3, ranges in [
        (3, [[0, 4], [4, 8], [8, 16], [16, math.inf]]),
        (5, [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, math.inf]]),
    ]:
        cfg = compose_train([f"model.l3={l3}"])
        assert resolved(cfg, "model")["points"]["regression_ranges"] == ranges


def test_command_line_beats_dataset_file():
    cfg = compose_train(["dataset=epic_verb", "model.l1=3", "optimizer.lr=0.5"])
    assert cfg.model.l1 == 3
    assert cfg.optimizer.lr == 0.5


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("eval", ["ckpt_path=x.ckpt"]), ("predict", ["ckpt_path=x.ckpt", "input=feats"])],
)
def test_entry_configs_compose(name, overrides):
    cfg = compose(name, overrides)
    assert cfg.task_name == name
    assert not cfg.logger


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "debug").glob("*.yaml")))
def test_debug_config_composes(name):
    cfg = compose_train([f"debug={name}"])
    assert cfg.dataset.name == "synthetic"


def test_optuna_search_space_covers_l1_to_l4_and_lr():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("asl_tal.conf", version_base="1.3"):
        cfg = hydra_compose("train", ["hparams_search=optuna"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert {"model.l1", "model.l2", "model.l3", "model.l4", "optimizer.lr"} <= set(params)
    assert cfg.optimized_metric == "val/average_mAP"


# per row: (overlapping regression ranges?, postprocess sigma, max_seg_num, first tIoU)
POSTPROCESS_ROWS = {
    "thumos14": (False, 0.5, 200, 0.3),
    "anet_i3d": (False, 0.75, 100, 0.5),
    "epic_verb": (True, 0.4, 2000, 0.1),
    "ego4d_mq": (True, 0.9, 2000, 0.1),
    "multithumos": (False, 0.5, 2000, 0.1),
    "charades": (False, 0.5, 2000, 0.1),
    "synthetic": (False, 0.5, 200, 0.3),
}


@pytest.mark.parametrize("name", sorted(POSTPROCESS_ROWS))
def test_dataset_row_selects_its_postprocess_and_evaluation(name):
    ranges, sigma, max_seg, first_tiou = POSTPROCESS_ROWS[name]
    cfg = compose_train([f"dataset={name}"])
    # ActionFormer's doubling ranges [0, 4], [4, 8], ...; EPIC and Ego4D's overlap: [2, 8]
    assert list(cfg.model.points.regression_ranges[1]) == ([2, 8] if ranges else [4, 8])
    assert cfg.postprocess.sigma == pytest.approx(sigma)
    assert cfg.postprocess.max_seg_num == max_seg
    assert cfg.evaluation.tiou_thresholds[0] == pytest.approx(first_tiou)


def test_a_group_choice_on_the_command_line_beats_the_dataset_file():
    cfg = compose_train(["dataset=anet_i3d", "model=asl", "postprocess=default"])
    assert (cfg.model.d_emb, cfg.postprocess.sigma) == (512, 0.5)
    assert cfg.optimizer.lr == pytest.approx(1e-3)  # still the ActivityNet row's optimizer


def test_stable_interface_keys_reach_the_objects_they_promise():
    """The README's "Stable interface" keys, each set on the command line, end up where the
    objects are built from."""
    cfg = compose_train(
        [
            "dataset=custom",
            "dataset.root=/data/x",
            "dataset.json_file=a.json",
            "dataset.feat_dir=feats",
            "dataset.input_dim=16",
            "dataset.num_classes=3",
            "dataset.train_subset=[tr]",
            "dataset.val_subset=[va]",
            "dataset.test_subset=[te]",
            "dataset.fps=7.5",
            "dataset.feat_stride=2",
            "dataset.feat_window=4",
            "dataset.max_seq_len=128",
            "dataset.fixed_length=64",
            "dataset.batch_size=3",
            "dataset.num_workers=1",
            "model.l1=2",
            "model.l2=3",
            "model.l3=4",
            "model.l4=1",
            "model.d_emb=48",
            "model.n_heads=6",
            "model.head_width=24",
            "model.sensitivity.class_level=false",
            "model.sensitivity.instance_level=false",
            "model.ascl.weight=0.3",
            "optimizer.lr=0.002",
            "optimizer.weight_decay=0.01",
            "trainer.max_epochs=3",
            "logger=csv",
            "seed=5",
            "ckpt_path=last.ckpt",
        ]
    )
    data = resolved(cfg, "dataset")
    assert data["root"] == "/data/x" and data["json_file"] == "a.json"
    assert data["feat_dir"] == "feats" and data["num_classes"] == 3
    assert (data["train_subset"], data["val_subset"], data["test_subset"]) == (
        ["tr"],
        ["va"],
        ["te"],
    )
    assert (data["fps"], data["feat_stride"], data["feat_window"]) == (7.5, 2, 4)
    assert (data["fixed_length"], data["batch_size"], data["num_workers"]) == (64, 3, 1)
    assert data["seed"] == 5
    model = resolved(cfg, "model")
    network = model["network"]
    assert (network["l1"], network["l2"], network["l3"]) == (2, 3, 4)
    assert (network["d_emb"], network["n_heads"], network["head_width"]) == (48, 6, 24)
    assert (network["input_dim"], network["max_seq_len"]) == (16, 128)
    assert model["sensitivity"]["evaluator_layers"] == 1
    assert model["ascl"]["weight"] == pytest.approx(0.3)
    detector = ASLDetector.from_config(model, num_classes=3)
    assert detector.objective.class_sensitivity is None
    assert detector.objective.instance_sensitivity is None
    assert detector.objective.ascl_weight == pytest.approx(0.3)
    assert detector.network.num_levels == 5 and detector.network.d_emb == 48
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (0.002, 0.01)
    assert cfg.trainer.max_epochs == 3 and cfg.seed == 5 and cfg.ckpt_path == "last.ckpt"
    assert list(cfg.logger) == ["csv"]


@pytest.mark.parametrize(("width", "channels"), [("null", 32), ("8", 8)])
def test_evaluator_width_sets_phi_channels(width, channels):
    """``model.sensitivity.evaluator_width`` narrows both evaluators; null keeps ``d_emb``."""
    model = resolved(
        compose_train(["model.d_emb=32", f"model.sensitivity.evaluator_width={width}"]), "model"
    )
    inst = ASLDetector.from_config(model, num_classes=3).objective.instance_sensitivity
    for phi in (inst.phi_cls, inst.phi_loc):
        assert phi.layers[0].conv.in_channels == 32
        assert [layer.conv.out_channels for layer in phi.layers] == [channels] * model["l4"]


def test_an_unknown_key_fails_at_composition_and_at_construction():
    with pytest.raises(ConfigCompositionException, match="tau_typo"):
        compose_train(["model.ascl.tau_typo=0.2"])
    model = resolved(compose_train(["+model.ascl.tau_typo=0.2"]), "model")
    with pytest.raises(ValueError, match=r"unknown model\.ascl\.tau_typo"):
        ASLDetector.from_config(model, num_classes=3)
    model = resolved(compose_train(["+model.network.depth=2", "~model.network.l1"]), "model")
    with pytest.raises(
        ValueError, match=r"unknown model\.network\.depth; missing model\.network\.l1"
    ):
        ASLDetector.from_config(model, num_classes=3)
