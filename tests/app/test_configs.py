"""Every dataset and experiment config composes, and carries its row of the paper's tables."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import asl_tal.app  # noqa: F401  (registers the ${sum:...} resolver)

CONF = Path(__file__).resolve().parents[2] / "conf"
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))
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
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def resolved(cfg, key):
    return OmegaConf.to_container(cfg[key], resolve=True)


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_config_composes(name):
    overrides = [f"dataset={name}"] + (CUSTOM_REQUIRED if name == "custom" else [])
    cfg = compose_train(overrides)
    dataset, model = resolved(cfg, "dataset"), resolved(cfg, "model")
    assert dataset["name"] == name
    assert model["input_dim"] == dataset["input_dim"]
    assert model["num_classes"] == dataset["num_classes"]
    if model["regression_ranges"] is not None:
        assert len(model["regression_ranges"]) == model["l3"] + 1


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
    assert model["l3"] + 1 == 9 == len(model["regression_ranges"])
    assert sum(model["stream_dims"]) == model["d_emb"]
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
        ("thumos_asl_ascl", True, True, 0.1),
    ],
)
def test_table_c_rows(name, class_level, instance_level, ascl_weight):
    cfg = compose_train([f"experiment={name}"])
    assert cfg.dataset.name == "thumos14"
    assert cfg.model.sensitivity.class_level is class_level
    assert cfg.model.sensitivity.instance_level is instance_level
    assert cfg.model.ascl.weight == pytest.approx(ascl_weight)


def test_command_line_beats_dataset_file():
    cfg = compose_train(["dataset=epic_verb", "model.l1=3", "optimizer.lr=0.5"])
    assert cfg.model.l1 == 3
    assert cfg.optimizer.lr == 0.5


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("eval", ["ckpt_path=x.ckpt"]), ("predict", ["ckpt_path=x.ckpt", "input=feats"])],
)
def test_entry_configs_compose(name, overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides)
    assert cfg.task_name == name
    assert not cfg.logger


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "debug").glob("*.yaml")))
def test_debug_config_composes(name):
    cfg = compose_train([f"debug={name}"])
    assert cfg.dataset.name == "synthetic"


def test_optuna_search_space_covers_l1_to_l4_and_lr():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert {"model.l1", "model.l2", "model.l3", "model.l4", "optimizer.lr"} <= set(params)
    assert cfg.optimized_metric == "val/average_mAP"
