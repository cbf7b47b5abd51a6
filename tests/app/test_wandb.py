"""W&B runs: one per job of a multirun, named by the job's overrides, grouped by the sweep,
finished even when the job fails; the best validation mAP in the summary; the test per-class
AP table and the results artifact; log_model offline is a warning, not an error.

The runs are read back from their offline ``.wandb`` files: a LevelDB log (32 KiB blocks of
records, each a 7-byte header ``crc32 (4) | length (2, little endian) | type (1)`` and a
payload; type 1 = a whole record, 2 / 3 / 4 = its first / middle / last piece) behind a
7-byte file header ``:W&B`` + magic + version, each record one W&B protobuf ``Record``.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import wandb
from asl_tal.conf import compose
from helpers.commands import run_process
from helpers.runs import read_json, tiny
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2

from asl_tal.tracking import log_results, per_class_ap_table, wandb_logger_config, wandb_run

BLOCK_SIZE = 32 * 1024
HEADER_SIZE = 7  # the file header and every record header are 7 bytes long
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pieces, pos = [], b"", HEADER_SIZE
    while pos + HEADER_SIZE <= len(data):
        if BLOCK_SIZE - pos % BLOCK_SIZE < HEADER_SIZE:  # a block's zero-padded tail
            pos += BLOCK_SIZE - pos % BLOCK_SIZE
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER_SIZE])
        payload = data[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
        pos += HEADER_SIZE + length
        if kind == FULL:
            records.append(wandb_internal_pb2.Record.FromString(payload))
        elif kind in (FIRST, MIDDLE):
            pieces = (pieces if kind == MIDDLE else b"") + payload
        elif kind == LAST:
            records.append(wandb_internal_pb2.Record.FromString(pieces + payload))
    return records


def of_type(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def logged_config(records: list) -> dict:
    """The run's config: every ``config`` record's top-level updates, the last value winning."""
    return {
        item.key: json.loads(item.value_json)
        for config in of_type(records, "config")
        for item in config.update
    }


def offline_run_file(job_dir: Path) -> Path:
    (run_file,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")
    return run_file


@pytest.mark.slow  # a 2-job multirun: in .ci/run's slow step
def test_a_two_job_multirun_writes_two_runs_with_their_own_config(data_dir, tmp_path):
    sweep = tmp_path / "sweep_42"
    proc = run_process(
        "train",
        "-m",
        *tiny(data_dir, tmp_path / "unused"),
        f"hydra.sweep.dir={sweep}",
        "logger=wandb",
        "logger.wandb.log_model=true",
        "scheduler.warmup_epochs=0",  # one epoch (trainer.max_epochs follows the schedule)
        "scheduler.epochs=1",
        "model.l1=1,2",
        env={"WANDB_MODE": "offline"},
    )
    output = proc.stdout + proc.stderr
    assert "already in progress" not in output
    # offline, log_model is one warning (Lightning alone raises), once per job
    assert output.count("log_model=True skipped") == 2

    for job, l1 in ((0, 1), (1, 2)):
        job_dir = sweep / str(job)
        records = wandb_records(offline_run_file(job_dir))
        (run,) = of_type(records, "run")
        # the overrides sorted by key, without paths.* and logger.* (Hydra's sweeper hands
        # each job its booleans as True / False)
        assert run.display_name == (
            f"debug=tiny,model.l1={l1},scheduler.epochs=1,scheduler.warmup_epochs=0,"
            "trainer.accelerator=cpu,trainer.deterministic=True"
        )
        assert run.run_group == "sweep_42"
        assert run.job_type == "train"
        assert logged_config(records)["model"]["l1"] == l1
        best = [m for m in of_type(records, "metric") if m.name == "val/average_mAP"]
        assert len(best) == 1 and best[0].summary.max and not best[0].summary.last
        (exit_record,) = of_type(records, "exit")
        assert exit_record.exit_code == 0

        # the test per-class AP table: AP at each tIoU and their mean, from the results file
        metrics = read_json(job_dir / "results" / "test_metrics.json")
        (table_file,) = job_dir.glob("wandb/offline-run-*/files/media/table/test/per_class_AP*")
        table = read_json(table_file)
        thresholds = ["AP@0.3", "AP@0.4", "AP@0.5", "AP@0.6", "AP@0.7"]
        assert table["columns"] == ["class", *thresholds, "average AP"]
        expected = {
            name: [*aps, sum(aps) / 5]
            for name, aps in metrics["per_class_AP"].items()
            if None not in aps
        }
        rows = {row[0]: row[1:] for row in table["data"]}
        assert rows.keys() == expected.keys()
        for name, values in expected.items():
            assert rows[name] == pytest.approx(values), name


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    """W&B offline with a service process of this test's own (no ``WANDB_SERVICE`` of
    another to attach to), torn down afterwards; the environment restored (Lightning sets
    WANDB_MODE)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    yield
    wandb.teardown()


def one_job(directory: Path) -> SimpleNamespace:
    """A stand-in trainer holding one offline WandbLogger writing under ``directory``."""
    return SimpleNamespace(
        loggers=[WandbLogger(project="asl-tal-test", save_dir=str(directory), offline=True)]
    )


def written_records(job_dir: Path) -> list:
    """The records of the finished offline run under ``job_dir``, read once its file is
    complete. The service process of W&B writes the file: ``run.finish()`` returns when the
    service has the run's exit, and only asks it to close the run's file (the file may still
    be short when it returns). ``wandb.teardown()`` asks the service, after that, to shut
    down and waits for the process to end; the service closes a run's file before it reads
    the next request, so every file is whole once the process is gone. The next run starts a
    service of its own."""
    wandb.teardown()
    return wandb_records(offline_run_file(job_dir))


def test_a_failing_job_finishes_its_run_and_the_next_job_gets_its_own(tmp_path, offline_wandb):
    failing = tmp_path / "job0"
    with pytest.raises(RuntimeError, match="diverged"), wandb_run(one_job(failing), failing):
        raise RuntimeError("diverged")
    assert wandb.run is None
    first = written_records(failing)
    (exit_record,) = of_type(first, "exit")
    assert exit_record.exit_code == 1

    following = tmp_path / "job1"
    with wandb_run(one_job(following), following):
        wandb.run.log({"val/average_mAP": 0.5})
    assert wandb.run is None
    first_id = of_type(first, "run")[0].run_id
    second_id = of_type(written_records(following), "run")[0].run_id
    assert first_id != second_id


def test_offline_log_model_is_a_warning_and_names_default_outside_hydra(caplog, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = OmegaConf.create({"task_name": "eval", "dataset": {"name": "thumos"}})
    logger_cfg = {"_target_": "x", "offline": True, "log_model": "all", "name": None}
    with caplog.at_level(logging.WARNING, logger="asl_tal.tracking"):
        out = wandb_logger_config({**logger_cfg, "group": None}, cfg)
    assert out["log_model"] is False
    assert "offline (offline: true): log_model=all skipped" in caplog.text
    assert (out["name"], out["group"]) == ("eval-thumos", "thumos")
    # a name or group given in the config stays
    given = wandb_logger_config({**logger_cfg, "name": "mine", "group": "g"}, cfg)
    assert (given["name"], given["group"]) == ("mine", "g")


@pytest.mark.parametrize("task", ["train", "eval", "predict"])
def test_job_type_is_the_task(task):
    needed = {"train": [], "eval": ["ckpt_path=x.ckpt"], "predict": ["ckpt_path=x.ckpt", "input=x"]}
    overrides = ["logger=wandb", *needed[task]]
    assert compose(task, overrides).logger.wandb.job_type == task


def test_per_class_ap_table_averages_the_thresholds_and_skips_classes_without_ap():
    metrics = {
        "tiou": [0.3, 0.5],
        "per_class_AP": {"jump": [0.5, 0.25], "absent": [None, None], "run": [1.0, 0.0]},
    }
    columns, rows = per_class_ap_table(metrics)
    assert columns == ["class", "AP@0.3", "AP@0.5", "average AP"]
    assert rows == [["jump", 0.5, 0.25, 0.375], ["run", 1.0, 0.0, 0.5]]


class OnlineRun:
    """Records what :func:`log_results` sends to an online run."""

    offline = False
    id = "r1"

    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.artifacts: list = []

    def log(self, data: dict) -> None:
        self.logged.append(data)

    def log_artifact(self, artifact) -> None:
        self.artifacts.append(artifact)


def test_online_the_results_files_become_one_artifact(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    metrics = results / "test_metrics.json"
    metrics.write_text(json.dumps({"tiou": [0.5], "per_class_AP": {"jump": [0.75]}}))
    detections = results / "test_detections.json"
    detections.write_text(json.dumps({"version": "1.3", "results": {}}))
    run = OnlineRun()
    log_results(run, results, [detections, metrics])
    (artifact,) = run.artifacts
    assert (artifact.name, artifact.type) == ("results-r1", "results")
    assert set(artifact.manifest.entries) == {"test_metrics.json", "test_detections.json"}
    (table_log,) = run.logged
    assert table_log["test/per_class_AP"].data == [["jump", 0.75, 0.75]]
