"""Checkpoints written before the config tree was split into blocks still load.

``legacy_hparams.json`` holds the hyper-parameters such a checkpoint saved (the flat
``model`` dict of the earlier layout, composed with ``debug=tiny dataset.input_dim=8``).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.checkpoints import (
    CheckpointMismatchError,
    check_model_bounds,
    load_checkpoint,
    upgrade_hparams,
)
from asl_tal.lit_module import ASLLitModule

LEGACY = json.loads((Path(__file__).parent / "legacy_hparams.json").read_text())


def todays_module(*overrides: str) -> ASLLitModule:
    cfg = compose("train", ["debug=tiny", "dataset.input_dim=8", *overrides])
    blocks = {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        for key in ("model", "optimizer", "scheduler", "postprocess", "evaluation")
    }
    return ASLLitModule(**blocks, class_names=["a", "b", "c"], class_counts=[3, 1, 2])


def test_legacy_hparams_map_onto_todays_blocks():
    upgraded = upgrade_hparams(LEGACY)
    today = todays_module().hparams
    for block in ("points", "sensitivity", "loss", "ema"):
        assert upgraded["model"][block] == today["model"][block], block
    # it trained with the released code's positions and unnormalised weights, today's defaults
    assert upgraded["model"]["sensitivity"]["divide_by_stride"] is True
    assert upgraded["model"]["sensitivity"]["weight_normalize"] == "none"
    # a checkpoint from before the switches trained with ReLU offsets, global attention and
    # the channel branch; today's defaults are ReLU, a window of 19, no channel branch
    today_network = today["model"]["network"]
    assert (today_network["offset_activation"], today_network["attn_window"]) == ("relu", 19)
    assert today_network["channel_attention"] is False
    assert upgraded["model"]["network"] == {
        **today_network,
        "attn_window": None,
        "channel_attention": True,
    }
    # the earlier layout stored tau 0.1, which topk mode (the default) also uses for null;
    # it trained with λ 0.1 and without the memory queue
    assert upgraded["model"]["ascl"] == {
        **today["model"]["ascl"],
        "tau": 0.1,
        "weight": 0.1,
        "memory_size": 0,
    }
    assert upgraded["model"]["sensitivity"]["evaluator_layers"] == LEGACY["model"]["l4"]
    assert upgraded["optimizer"] == today["optimizer"]
    assert upgraded["scheduler"] == today["scheduler"]
    assert upgraded["postprocess"] == today["postprocess"]
    assert upgrade_hparams(upgraded) == upgraded  # today's layout passes through


def test_a_legacy_checkpoint_loads_its_weights(tmp_path):
    weights = todays_module(
        "model.ascl.memory_size=0",
        "model.network.attn_window=null",
        "model.network.channel_attention=true",
    ).state_dict()
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": LEGACY, "state_dict": weights}, path)
    module = load_checkpoint(path, ["a", "b", "c"], 8)
    assert module.detector.objective.ascl.settings.tau == 0.1
    assert module.hparams.model["network"]["d_emb"] == LEGACY["model"]["d_emb"]
    for name, value in module.state_dict().items():
        assert torch.equal(value, weights[name]), name


@pytest.mark.parametrize(
    "ascl, tau, memory_size",
    [({"mode": "topk"}, 0.1, 512), ({"mode": "windows", "weight": 0.0}, 0.07, 0)],
)
def test_null_meant_the_code_values_of_then(ascl, tau, memory_size):
    """Checkpoints written while the model config held null for "the mode's own" tau and
    queue size and for the doubling regression ranges load with those values written out:
    topk 0.1 and 512, windows 0.07 and none; debug=tiny has l3 = 3, so four levels."""
    hparams = copy.deepcopy(dict(todays_module().hparams))
    hparams["model"]["ascl"].update(ascl, tau=None, memory_size=None)
    hparams["model"]["points"]["regression_ranges"] = None
    model = upgrade_hparams(hparams)["model"]
    assert (model["ascl"]["tau"], model["ascl"]["memory_size"]) == (tau, memory_size)
    assert model["points"]["regression_ranges"] == [[0, 4], [4, 8], [8, 16], [16, math.inf]]
    assert hparams["model"]["ascl"]["tau"] is None  # the checkpoint's own copy is left alone


def test_a_checkpoint_asks_for_no_more_than_the_settings_trust(tmp_path):
    """The bounds come from the settings' declarations: l3 up to 12, 16 feature streams."""
    hparams = upgrade_hparams(LEGACY)
    hparams["model"]["network"]["l3"] = 13
    with pytest.raises(
        CheckpointMismatchError, match=r"l3=13 is outside the supported range 0\.\.12"
    ):
        check_model_bounds(hparams, tmp_path / "x.ckpt")
    hparams["model"]["network"].update(l3=3, input_dim=[8] * 17)
    with pytest.raises(CheckpointMismatchError, match=r"input_dim=17 is outside the supported"):
        check_model_bounds(hparams, tmp_path / "x.ckpt")
    hparams["model"]["network"]["input_dim"] = 8
    check_model_bounds(hparams, tmp_path / "x.ckpt")
