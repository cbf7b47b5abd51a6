"""The Lightning module of ``debug=tiny``, built in process for tests that need one."""

from __future__ import annotations

from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.lit_module import ASLLitModule


def tiny_module(overrides: list[str]) -> ASLLitModule:
    """The module of ``debug=tiny`` (8-d inputs, 64 steps, 3 classes) with ``overrides``."""
    cfg = compose(
        "train",
        overrides=["debug=tiny", "dataset.input_dim=8", "dataset.max_seq_len=64", *overrides],
    )
    return ASLLitModule(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=OmegaConf.to_container(cfg.optimizer),
        scheduler=OmegaConf.to_container(cfg.scheduler),
        postprocess=OmegaConf.to_container(cfg.postprocess),
        evaluation=OmegaConf.to_container(cfg.evaluation),
        class_names=["a", "b", "c"],
    )
