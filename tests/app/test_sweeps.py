"""Sweeps: the value handed to the sweeper is the run's best, a failing job does not stop
the sweep, the submitit local launcher runs a sweep end to end, two Optuna workers share one
sqlite study, and a sweep plugin that is not installed is one line naming the extra.

The submitit sweep and the two Optuna workers are ``slow`` (several processes each);
.ci/run runs them.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers.commands import process_env, run_command, run_process
from helpers.runs import read_json
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

import asl_tal.cli.user_errors as command_errors
import asl_tal.sweeps as sweeps
from asl_tal.config_blocks import ConfigValueError
from asl_tal.sweeps import (
    MissingSweepExtraError,
    SweepJobError,
    ValidationHistory,
    check_sweep_plugins,
    optimized_value,
    require_sweep_plugins,
)

METRIC = "val/average_mAP"
METRIC_FILE_KEYS = {"tiou", "mAP", "average_mAP", "per_class_AP"}
# a few batches of the tiny config: seconds per job
QUICK = (
    "debug=tiny",
    "trainer.accelerator=cpu",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
)


def checkpoint(monitor: str | None, best: float | None) -> ModelCheckpoint:
    callback = ModelCheckpoint(monitor=monitor, mode="max")
    callback.best_model_score = None if best is None else torch.tensor(best)
    return callback


def test_the_best_checkpoint_score_is_returned_not_the_last_epoch():
    history = [0.30, 0.80, 0.50]  # the last epoch is not the best
    value = optimized_value(METRIC, "max", [checkpoint(METRIC, 0.80)], history)
    assert value == pytest.approx(0.80)


def test_without_a_checkpoint_on_the_metric_the_best_epoch_by_mode_is_returned():
    others = [checkpoint("val/loss", 0.1), checkpoint(None, None), checkpoint(METRIC, None)]
    history = [0.30, 0.80, math.nan, 0.50]
    assert optimized_value(METRIC, "max", others, history) == pytest.approx(0.80)
    assert optimized_value(METRIC, "min", others, history) == pytest.approx(0.30)


def test_a_metric_never_logged_is_one_line_naming_it():
    with pytest.raises(ConfigValueError, match=r"optimized_metric=val/mAP_typo.*val/loss"):
        optimized_value("val/mAP_typo", "max", [], [], logged={"val/loss": 1.0})
    with pytest.raises(ConfigValueError, match="optimized_mode"):
        optimized_value(METRIC, "maximize", [], [0.5])


def test_validation_history_skips_sanity_checks_and_epochs_without_the_metric():
    history = ValidationHistory(METRIC)
    for sanity, metrics in [
        (True, {METRIC: torch.tensor(0.9)}),
        (False, {METRIC: torch.tensor(0.25)}),
        (False, {"val/loss": torch.tensor(1.0)}),
        (False, {METRIC: torch.tensor(0.5)}),
    ]:
        history.on_validation_end(
            SimpleNamespace(sanity_checking=sanity, callback_metrics=metrics), None
        )
    assert history.values == [0.25, 0.5]


@pytest.mark.parametrize(
    ("override", "plugin"),
    [
        ("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper"),
        ("+hparams_search=my_search", "hydra_plugins.hydra_optuna_sweeper"),
        ("hydra/sweeper=optuna", "hydra_plugins.hydra_optuna_sweeper"),
        ("hydra/launcher=joblib", "hydra_plugins.hydra_joblib_launcher"),
        ("hydra/launcher=submitit_slurm", "hydra_plugins.hydra_submitit_launcher"),
    ],
)
def test_a_missing_sweep_plugin_is_one_line_with_the_install_command(
    monkeypatch, capsys, override, plugin
):
    monkeypatch.setattr(sweeps, "plugin_installed", lambda module: module != plugin)
    with pytest.raises(SystemExit) as exit_info:
        require_sweep_plugins(["-m", "model.l1=1,2", override])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert override in err and plugin in err and "pip install 'asl-tal[sweep]'" in err


def test_overrides_that_pick_no_sweep_plugin_need_none(monkeypatch):
    monkeypatch.setattr(sweeps, "plugin_installed", lambda module: False)
    check_sweep_plugins(
        ["hparams_search=null", "hydra/launcher=basic", "hydra.launcher.n_jobs=4", "-m"]
    )
    with pytest.raises(MissingSweepExtraError):
        check_sweep_plugins(["hydra/launcher=submitit_local"])


@pytest.mark.parametrize("multirun", [False, True])
def test_user_errors_exit_2_in_a_single_run_and_fail_the_job_in_a_multirun(
    monkeypatch, capsys, multirun
):
    monkeypatch.setattr(command_errors, "in_multirun", lambda: multirun)
    expected = SweepJobError if multirun else SystemExit
    with pytest.raises(expected) as raised, command_errors.user_errors():
        raise ConfigValueError("model.l3: must be >= 0, got -1")
    if multirun:
        # an ordinary exception, which Hydra's job runner catches (SystemExit is not one)
        assert isinstance(raised.value, Exception)
        assert str(raised.value) == "model.l3: must be >= 0, got -1"
    else:
        assert raised.value.code == 2
        assert capsys.readouterr().err == "error: model.l3: must be >= 0, got -1\n"


def compose_with_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module("asl_tal.conf", version_base="1.3"):
        return compose("train", overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("launcher", "plugin", "schema"),
    [
        ("joblib", "hydra_plugins.hydra_joblib_launcher.config", "JobLibLauncherConf"),
        ("submitit_local", "hydra_plugins.hydra_submitit_launcher.config", "LocalQueueConf"),
        ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.config", "SlurmQueueConf"),
    ],
)
@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema:UserWarning")
def test_launcher_configs_set_every_field_of_the_plugins_schema(launcher, plugin, schema):
    """Our YAML replaces the plugin's structured config: it must carry each of its fields
    (the launcher reads them all) and nothing else."""
    schema = getattr(pytest.importorskip(plugin), schema)
    cfg = compose_with_hydra([f"hydra/launcher={launcher}"])
    ours = OmegaConf.to_container(cfg.hydra.launcher)
    assert set(ours) == {field.name for field in dataclasses.fields(schema)}
    assert ours["_target_"] == schema._target_


def test_optuna_storage_comes_from_the_environment_or_the_command_line(monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    monkeypatch.delenv("ASL_TAL_OPTUNA_STORAGE", raising=False)
    assert compose_with_hydra(["hparams_search=optuna"]).hydra.sweeper.storage is None
    monkeypatch.setenv("ASL_TAL_OPTUNA_STORAGE", "sqlite:///from_env.db")
    cfg = compose_with_hydra(["hparams_search=optuna"])
    assert cfg.hydra.sweeper.storage == "sqlite:///from_env.db"
    cfg = compose_with_hydra(["hparams_search=optuna", "hydra.sweeper.storage=sqlite:///cli.db"])
    assert cfg.hydra.sweeper.storage == "sqlite:///cli.db"


@pytest.mark.parametrize(("devices", "nodes"), [("2", "1"), ("8", "4")])
def test_ddp_takes_devices_and_nodes_from_the_command_line(devices, nodes):
    default = compose_with_hydra(["trainer=ddp"]).trainer
    assert (default.devices, default.num_nodes, default.strategy) == (-1, 1, "ddp")
    cfg = compose_with_hydra(
        ["trainer=ddp", f"trainer.devices={devices}", f"trainer.num_nodes={nodes}"]
    )
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (int(devices), int(nodes))


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())


def test_a_failing_job_does_not_stop_the_sweep(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_command(
        "train",
        "-m",
        "model.l3=-1,3",  # job 0 fails on its value, job 1 must still run
        *QUICK,
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={sweep}",
        "scheduler.epochs=0",
        check=False,
    )
    failed, completed = job_dirs(sweep)
    assert METRIC_FILE_KEYS <= set(read_json(completed / "results" / "test_metrics.json"))
    assert not (failed / "results").exists()
    # the sweep ends non-zero and names the failed job and its reason, without a traceback
    assert proc.returncode == 1
    assert "Error executing job with overrides: ['model.l3=-1'," in proc.stderr
    assert "must be >= 0, got -1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "job failed:" in (failed / "train.log").read_text()


@pytest.mark.slow  # ~1 min on 2 busy cores; .ci/run runs it
def test_submitit_local_launcher_runs_a_two_job_sweep(data_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    run_process(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        "model.l1=1,2",
        *QUICK,
        f"paths.data_dir={data_dir}",
        # the random part of the default name: each job, a process of its own, must resolve
        # the launcher's sweep dir, not one of its own
        f"hydra.sweep.dir={tmp_path}/sweep_${{run_suffix:}}",
        "scheduler.epochs=0",
    )
    (sweep,) = tmp_path.glob("sweep_*")
    jobs = job_dirs(sweep)
    assert [p.name for p in jobs] == ["0", "1"]
    for job, l1 in zip(jobs, (1, 2), strict=True):
        assert METRIC_FILE_KEYS <= set(read_json(job / "results" / "test_metrics.json"))
        assert f"model.l1={l1}" in (job / ".hydra" / "overrides.yaml").read_text()
    # each job ran as its own submitit job (a process; its id names its folder of logs)
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]
    assert len(submitted) == 2
    assert all(list(folder.glob("*_result.pkl")) for folder in submitted)


def best_logged(job: Path) -> float:
    """The highest validation average mAP in a job's CSV log (one row per epoch)."""
    with open(job / "csv" / "version_0" / "metrics.csv") as f:
        values = [float(row[METRIC]) for row in csv.DictReader(f) if row.get(METRIC)]
    assert len(values) == 2, values  # 1 warm-up + 1 epoch
    return max(values)


@pytest.mark.slow  # ~1 min on 2 busy cores; .ci/run runs it
def test_two_optuna_workers_share_one_sqlite_study(data_dir, tmp_path):
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # the study exists before the workers start (what `optuna create-study` does), so the
    # two never race to create its tables
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    base = [
        sys.executable,
        "-m",
        "asl_tal.train",
        "-m",
        "hparams_search=optuna",
        *QUICK,
        f"paths.data_dir={data_dir}",
        "scheduler.epochs=1",
        "test_after_fit=false",
        "hydra.sweeper.study_name=shared",
        "hydra.sweeper.n_trials=1",
    ]
    env = process_env()
    env.pop("ASL_TAL_OPTUNA_STORAGE", None)
    workers = [
        # one worker names the storage on the command line, the other in the environment
        subprocess.Popen(
            [*base, f"hydra.sweep.dir={tmp_path / 'a'}", f"hydra.sweeper.storage={storage}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [*base, f"hydra.sweep.dir={tmp_path / 'b'}"],
            env={**env, "ASL_TAL_OPTUNA_STORAGE": storage},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len(trials) == 2  # 1 + 1
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # each trial's value is the best epoch of its job's log, whichever epoch that was
    logged = sorted(best_logged(tmp_path / worker / "0") for worker in ("a", "b"))
    assert sorted(t.value for t in trials) == pytest.approx(logged, rel=1e-6)


def test_a_failing_optuna_trial_is_stored_as_failed_and_the_study_goes_on(data_dir, tmp_path):
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_command(
        "train",
        "-m",
        "hparams_search=optuna",
        # one key to search; the seeded sampler's first two picks are -1 (fails), then 3
        "hydra.sweeper.params=null",
        "model.l3=choice(-1,3)",
        "hydra.sweeper.sampler.seed=10",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        *QUICK,
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "scheduler.epochs=0",
        "test_after_fit=false",
    )
    # the database's migration tool logs nothing at INFO ("setup plugin alembic...")
    assert "setup plugin" not in proc.stdout + proc.stderr
    trials = optuna.load_study(study_name="asl_l1_l4", storage=storage).trials
    assert [(t.params["model.l3"], t.state) for t in trials] == [
        (-1, optuna.trial.TrialState.FAIL),
        (3, optuna.trial.TrialState.COMPLETE),
    ]
