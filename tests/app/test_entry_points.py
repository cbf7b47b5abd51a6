"""The application through its real entry points: train, eval, predict, sweeps, resume.

The commands run in this process (``helpers.commands.run_command``); the run killed with
SIGKILL and the two-process evaluation run in processes of their own."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers.commands import run_command, run_process
from helpers.runs import read_json, tiny

METRIC_KEYS = {"tiou", "mAP", "average_mAP", "per_class_AP"}


def test_train_writes_checkpoints_class_map_and_results(trained_run):
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    assert read_json(trained_run / "class_map.json")["classes"] == [
        f"action_{i:02d}" for i in range(8)
    ]
    metrics = read_json(trained_run / "results" / "test_metrics.json")
    assert METRIC_KEYS <= set(metrics)
    assert metrics["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert 0.0 <= metrics["average_mAP"] <= 1.0
    assert math.isclose(metrics["average_mAP"], float(np.mean(metrics["mAP"])), abs_tol=1e-9)
    detections = read_json(trained_run / "results" / "test_detections.json")["results"]
    assert detections, "no video got detections"
    for rows in detections.values():
        for row in rows:
            assert row["label"].startswith("action_")
            assert row["segment"][0] <= row["segment"][1]


def test_checkpoint_holds_ema_weights_and_loss_normaliser(trained_run):
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    state = ckpt["state_dict"]
    assert any(k.startswith("ema.module.") for k in state)
    assert "detector.objective.loss_normalizer" in state
    assert ckpt["hyper_parameters"]["class_names"][0] == "action_00"


def test_offline_scorer_agrees_with_the_run(trained_run, data_dir, tmp_path):
    out = tmp_path / "rescored.json"
    run_command(
        "evaluate",
        "--gt",
        str(data_dir / "synthetic_tiny" / "annotations.json"),
        "--pred",
        str(trained_run / "results" / "test_detections.json"),
        "--subset",
        "test",
        "--out",
        str(out),
    )
    run_metrics = read_json(trained_run / "results" / "test_metrics.json")
    # the detections file rounds nothing away that matters at this tolerance
    assert read_json(out)["average_mAP"] == pytest.approx(run_metrics["average_mAP"], abs=1e-6)


def test_eval_entry_point_reproduces_the_test_metrics(trained_run, data_dir, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    run_command("eval", *tiny(data_dir, tmp_path, f"ckpt_path={ckpt}"))
    again = read_json(tmp_path / "results" / "test_metrics.json")
    first = read_json(trained_run / "results" / "test_metrics.json")
    assert again["mAP"] == pytest.approx(first["mAP"], abs=1e-9)


@pytest.mark.slow  # two processes (Lightning starts the second one): in .ci/run's slow step
def test_eval_under_ddp_sim_matches_one_process(trained_run, data_dir, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    run_process("eval", *tiny(data_dir, tmp_path, f"ckpt_path={ckpt}", "trainer=ddp_sim"))
    ddp = read_json(tmp_path / "results" / "test_metrics.json")
    single = read_json(trained_run / "results" / "test_metrics.json")
    assert ddp["mAP"] == pytest.approx(single["mAP"], abs=1e-9)


def test_predict_writes_detections_for_a_feature_folder(trained_run, tmp_path):
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for name, length in (("clip_a", 90), ("clip_b", 150)):
        np.save(feats / f"{name}.npy", rng.normal(size=(length, 64)).astype(np.float32))
    out = tmp_path / "pred.json"
    run_command(
        "predict",
        "debug=tiny",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
        f"input={feats}",
        f"output={out}",
    )
    results = read_json(out)["results"]
    assert set(results) == {"clip_a", "clip_b"}
    # stride 1, window 1, fps 1: a video of T steps lasts T seconds
    for name, length in (("clip_a", 90), ("clip_b", 150)):
        for row in results[name]:
            assert 0.0 <= row["segment"][0] <= row["segment"][1] <= length
            assert 0.0 < row["score"] <= 1.0


def test_resume_after_sigkill_matches_an_uninterrupted_run(data_dir, tmp_path):
    # tiny set: 24 training videos, batch 4 -> 6 steps per epoch; killed at step 8 (epoch 2)
    common = ("trainer.max_epochs=3", "test_after_fit=false", "dataset.seed=3")
    straight = tmp_path / "straight"
    run_command("train", *tiny(data_dir, straight, *common))

    killed = tmp_path / "killed"
    proc = run_process(
        "train",
        *tiny(
            data_dir,
            killed,
            *common,
            "+callbacks.kill._target_=helpers.callbacks.KillAtStep",
            "+callbacks.kill.step=8",
        ),
        check=False,
    )
    assert proc.returncode == -9
    last = killed / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0

    resumed = tmp_path / "resumed"
    run_command("train", *tiny(data_dir, resumed, *common, f"ckpt_path={last}"))

    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 18
    for key, value in a["state_dict"].items():
        # same seed, deterministic CPU kernels, num_workers=0: equal up to float noise
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)


def test_multirun_sweep_runs_every_job(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    run_command(
        "train",
        "-m",
        "model.l1=1,2",
        "model.l2=1,2",
        "debug=tiny",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep}",
        "scheduler.epochs=0",
        "trainer.limit_train_batches=2",
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    for job in jobs:
        assert METRIC_KEYS <= set(read_json(job / "results" / "test_metrics.json"))


def test_wandb_logger_writes_an_offline_run_without_api_key(data_dir, tmp_path):
    run_command(
        "train",
        *tiny(data_dir, tmp_path, "logger=wandb", "scheduler.epochs=0", "test_after_fit=false"),
        env={"WANDB_MODE": "", "WANDB_DIR": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_missing_dataset_is_one_readable_message(tmp_path):
    proc = run_command(
        "train", "dataset=epic_verb", f"paths.data_dir={tmp_path}", "logger=none", check=False
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "asl-convert epic" in proc.stderr
    assert str(tmp_path / "epic_kitchens") in proc.stderr


def test_bad_override_names_the_key(tmp_path):
    proc = run_command("train", "model.not_a_key=3", "logger=none", check=False)
    assert proc.returncode != 0
    assert "not_a_key" in proc.stderr


def test_checkpoint_from_another_dataset_is_refused(trained_run, tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(
        '{"database": {"v": {"subset": "test", "duration": 10, "fps": 1, "annotations": '
        '[{"label": "jump", "segment": [1, 2]}]}}}'
    )
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "v.npy", np.zeros((10, 64), dtype=np.float32))
    proc = run_command(
        "eval",
        "dataset=custom",
        f"dataset.json_file={ann}",
        f"dataset.feat_dir={tmp_path / 'feats'}",
        "dataset.input_dim=64",
        "dataset.num_classes=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
        check=False,
    )
    assert proc.returncode == 2
    assert "trained on 8 classes" in proc.stderr


def test_class_agnostic_training_fused_with_external_video_scores(data_dir, trained_run, tmp_path):
    # ActivityNet's second variant on the tiny synthetic data: one "action" class is
    # trained; each proposal is then given the video's top-2 classes from a score file.
    root = data_dir / "synthetic_tiny"  # generated by the trained_run fixture
    database = read_json(root / "annotations.json")["database"]
    names = sorted({a["label"] for v in database.values() for a in v["annotations"]})
    top2 = {}
    results = {}
    for vid, video in database.items():
        scores = np.full(len(names), 0.01)
        for rank, ann in enumerate(video["annotations"][:2]):
            scores[names.index(ann["label"])] = 0.9 - 0.1 * rank
        results[vid] = scores.tolist()
        top2[vid] = {names[i] for i in np.argsort(-scores)[:2]}
    score_file = tmp_path / "video_scores.json"
    score_file.write_text(json.dumps({"class": names, "results": results}))
    run_dir = tmp_path / "run"
    run_command(
        "train",
        "dataset=custom",
        f"dataset.json_file={root / 'annotations.json'}",
        f"dataset.feat_dir={root / 'features'}",
        "dataset.input_dim=64",
        "dataset.num_classes=1",
        f"dataset.ext_score_file={score_file}",
        "dataset.max_seq_len=256",
        "dataset.num_workers=0",
        "postprocess.class_agnostic=true",
        "postprocess.voting_thresh=0.9",
        "model.d_emb=32",
        "model.n_heads=2",
        "model.head_width=32",
        "model.l3=3",
        "scheduler.warmup_epochs=1",
        "scheduler.epochs=1",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    )
    metrics = read_json(run_dir / "results" / "test_metrics.json")
    assert set(metrics["per_class_AP"]) <= set(names)  # evaluated over the real classes
    detections = read_json(run_dir / "results" / "test_detections.json")["results"]
    assert detections
    for vid, rows in detections.items():
        assert {row["label"] for row in rows} <= top2[vid]
    # without the video-level scores, raw-feature prediction cannot name the classes
    proc = run_command(
        "predict",
        "dataset=custom",
        "dataset.json_file=unused.json",
        "dataset.feat_dir=unused",
        "dataset.input_dim=64",
        "dataset.num_classes=1",
        f"hydra.run.dir={tmp_path / 'predict'}",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"input={root / 'features'}",
        check=False,
    )
    assert proc.returncode == 2
    assert "class-agnostic checkpoint" in proc.stderr


def test_optuna_search_runs_trials_and_reports_the_best(data_dir, tmp_path):
    sweep = tmp_path / "optuna"
    run_command(
        "train",
        "-m",
        "hparams_search=optuna",
        "debug=tiny",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep}",
        "scheduler.epochs=0",
        "logger=none",
    )
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in best and "model.l1" in best


def test_fast_dev_run_needs_no_logger(data_dir, tmp_path):
    # what debug=fast_dev_run sets, on the tiny data
    proc = run_command(
        "train",
        *tiny(data_dir, tmp_path, "trainer.fast_dev_run=true", "logger=none"),
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_bf16_mixed_training_on_cpu_clips_with_the_fused_optimizer(data_dir, tmp_path):
    # bf16 autocast on CPU with the default fused AdamW and gradient clipping on: Lightning
    # alone refuses this combination (it is only wrong for fp16's gradient scaler).
    proc = run_command(
        "train",
        *tiny(data_dir, tmp_path, "trainer.fast_dev_run=true", "logger=none"),
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=1.0",
    )
    assert "Traceback" not in proc.stderr
    assert "bfloat16" in proc.stderr + proc.stdout
