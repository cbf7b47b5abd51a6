"""``asl-publish``: a small evaluation-only checkpoint that predicts like the original."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from asl_tal.conf import compose
from helpers.runs import read_json

from asl_tal.cli.predict import predict
from asl_tal.cli.publish import main, publish_checkpoint

EMA = "ema.module."


@pytest.fixture(scope="module")
def published(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("published") / "model.ckpt"
    return publish_checkpoint(trained_run / "checkpoints" / "last.ckpt", out)


def test_published_checkpoint_keeps_ema_weights_and_hparams_only(trained_run, published):
    last = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt = torch.load(published, weights_only=True)
    assert set(ckpt) == {
        "hyper_parameters", "state_dict", "epoch", "global_step", "pytorch-lightning_version"
    }  # fmt: skip
    assert ckpt["hyper_parameters"]["class_names"] == last["hyper_parameters"]["class_names"]
    assert ckpt["global_step"] == last["global_step"]
    state = ckpt["state_dict"]
    assert set(state) == set(last["state_dict"])
    for name, tensor in state.items():
        if name.startswith("detector."):
            ema_name = EMA + name[len("detector.") :]
            torch.testing.assert_close(tensor, last["state_dict"][ema_name], rtol=0, atol=0)
        else:
            torch.testing.assert_close(tensor, last["state_dict"][name], rtol=0, atol=0)
    # last.ckpt: weights + EMA + two AdamW moments; published: the EMA weights once
    assert (
        published.stat().st_size < 0.35 * (trained_run / "checkpoints" / "last.ckpt").stat().st_size
    )


def test_predict_on_the_published_checkpoint_gives_the_same_detections(
    trained_run, published, tmp_path
):
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(1)
    np.save(feats / "clip.npy", rng.normal(size=(120, 64)).astype(np.float32))
    results = {}
    for name, ckpt in (
        ("original", trained_run / "checkpoints" / "last.ckpt"),
        ("published", published),
    ):
        out = tmp_path / f"{name}.json"
        run = tmp_path / name
        overrides = [f"hydra.run.dir={run}", f"paths.output_dir={run}", "trainer.accelerator=cpu"]
        cfg = compose(
            "predict",
            ["debug=tiny", *overrides, f"ckpt_path={ckpt}", f"input={feats}", f"output={out}"],
        )
        predict(cfg)
        results[name] = read_json(out)["results"]["clip"]
    assert results["published"] and results["published"] == results["original"]


def test_publishing_over_the_source_is_refused(trained_run, capsys):
    last = trained_run / "checkpoints" / "last.ckpt"
    before = last.stat().st_size
    with pytest.raises(SystemExit) as info:
        main([str(last), "--out", str(last)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {last} is the checkpoint being published; choose another path"
    assert last.stat().st_size == before
