"""Hostile inputs to the entry points: remote and damaged checkpoints, checkpoints that lie
about their size or come from another dataset, run directories that would be overwritten or
cannot be written, and plots that cannot be saved. Each refusal is one ``error: ...`` line
with exit status 2, before any work where it can be; a failing plot never stops training.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from asl_tal.conf import compose
from helpers.commands import entry_point, process_env, run_command
from helpers.model_defaults import visualization_callback
from helpers.runs import error_line, tiny
from matplotlib.figure import Figure

from asl_tal.checkpoints import (
    CheckpointMismatchError,
    CheckpointReadError,
    check_resume_checkpoint,
    load_checkpoint,
    load_state_dict_checked,
    local_checkpoint_path,
    read_checkpoint,
)
from asl_tal.cli.build import build_datamodule, build_module
from asl_tal.cli.run_folder import check_fresh_run_dir
from asl_tal.cli.user_errors import one_line_message
from asl_tal.errors import OutputWriteError, UserInputError
from asl_tal.outputs import check_writable

# debug=tiny: 1 warm-up + 2 epochs; per validation epoch the callback draws 2 sensitivity
# plots, 1 timeline, the PR curves and the per-class AP bars (tests/test_viz.py)
EPOCHS = 3
FIGURES_PER_EPOCH = 5


def copy_run(trained_run: Path, target: Path) -> Path:
    """A run directory holding copies of the shared tiny run's checkpoints."""
    (target / "checkpoints").mkdir(parents=True)
    for ckpt in (trained_run / "checkpoints").glob("*.ckpt"):
        shutil.copy2(ckpt, target / "checkpoints" / ckpt.name)
    return target


# --------------------------------------------------------------------------------------
# 1. a checkpoint URL is refused before anything is fetched or unpickled
class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appears if the pickle runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def pickle_server(tmp_path):
    """``(url, marker, requests)``: a checkpoint whose unpickling creates ``marker``, served
    on 127.0.0.1; the server thread is stopped when the test ends."""
    marker = tmp_path / "the_pickle_ran"
    buffer = io.BytesIO()
    torch.save(CreatesFile(marker), buffer)
    body = buffer.getvalue()
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/x.ckpt", marker, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_checkpoint_url_is_refused_before_it_is_fetched(pickle_server, data_dir, tmp_path):
    url, marker, requests = pickle_server
    # the control: loaded the way Lightning loads a URL without weights_only, it runs
    with urllib.request.urlopen(url, timeout=10) as response:
        torch.load(io.BytesIO(response.read()), weights_only=False).close()
    assert marker.exists()
    marker.unlink()
    requests.clear()

    proc = run_command("train", *tiny(data_dir, tmp_path / "run", f"ckpt_path={url}"), check=False)
    error_line(proc, f"ckpt_path={url}", "only local checkpoint files")
    assert not marker.exists()
    assert requests == []  # never even downloaded
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/best.ckpt",
        "s3://bucket/best.ckpt",
        "gs://bucket/best.ckpt",
        "file:///tmp/best.ckpt",
        "simplecache::http://example.com/best.ckpt",
        "data:application/octet-stream;base64,AAAA",
        "registry:asl-tal:latest",
    ],
)
def test_every_remote_scheme_is_refused(value):
    with pytest.raises(UserInputError, match="only local checkpoint files"):
        local_checkpoint_path(value)


def test_a_windows_drive_letter_is_a_local_path():
    # "C:" is no URL scheme: the path is looked up (and is missing here)
    with pytest.raises(FileNotFoundError, match="not found"):
        local_checkpoint_path("C:\\runs\\best.ckpt")


# --------------------------------------------------------------------------------------
# 2. run directories: unique names, never trained over
@pytest.mark.slow  # two processes at once: in .ci/run's slow step
def test_eval_runs_started_together_get_two_run_directories_and_need_ckpt_path(tmp_path):
    # the default hydra.run.dir (relative to the working directory); without ckpt_path each
    # run stops right after Hydra made its directory
    command = [sys.executable, "-m", entry_point("eval")[0]]
    procs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        done = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
        error_line(done, "ckpt_path=... is required")
    runs = sorted((tmp_path / "outputs" / "eval" / "synthetic").iterdir())
    assert len(runs) == 2
    pattern = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}_[0-9a-f]{4}")
    for run in runs:
        assert pattern.fullmatch(run.name), run.name
        assert (run / ".hydra" / "config.yaml").is_file()


def test_training_into_a_run_directory_with_checkpoints_is_refused(trained_run, data_dir, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    proc = run_command("train", *tiny(data_dir, run), check=False)
    error_line(proc, str(run), "already holds checkpoints", "best.ckpt", "hydra.run.dir")
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


def test_fresh_run_directory_rule(tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    check_fresh_run_dir(run, None)  # no directory yet
    (run / "checkpoints").mkdir(parents=True)
    check_fresh_run_dir(run, None)  # no checkpoint in it
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(UserInputError, match="already holds checkpoints"):
        check_fresh_run_dir(run, None)
    with pytest.raises(UserInputError, match="already holds checkpoints"):
        check_fresh_run_dir(run, other / "checkpoints" / "last.ckpt")
    check_fresh_run_dir(run, run / "checkpoints" / "last.ckpt")


# --------------------------------------------------------------------------------------
# 3. damaged checkpoints, missing ckpt_path, unwritable results, another dataset
def damaged(trained_run: Path, folder: Path) -> dict[str, Path]:
    data = (trained_run / "checkpoints" / "best.ckpt").read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "text": b"this is not a checkpoint\n",
        "empty": b"",
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / f"{name}.ckpt").write_bytes(content)
    return {name: folder / f"{name}.ckpt" for name in files}


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_damaged_checkpoint_is_one_error_naming_the_file(trained_run, tmp_path, kind):
    path = damaged(trained_run, tmp_path)[kind]
    with pytest.raises(CheckpointReadError, match="not a readable checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_eval_of_a_truncated_checkpoint_is_one_line(trained_run, data_dir, tmp_path):
    path = damaged(trained_run, tmp_path / "ckpts")["truncated"]
    proc = run_command("eval", *tiny(data_dir, tmp_path / "run", f"ckpt_path={path}"), check=False)
    error_line(proc, str(path), "not a readable checkpoint", "truncated")


def test_predict_without_ckpt_path_says_it_is_required(tmp_path):
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "clip.npy", np.zeros((32, 64), dtype=np.float32))
    proc = run_command(
        "predict", "debug=tiny", f"hydra.run.dir={tmp_path / 'run'}", f"input={feats}", check=False
    )
    error_line(proc, "ckpt_path=... is required")


def test_unwritable_results_folder_is_one_line_naming_it(trained_run, data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results").write_text("a file where the results folder belongs")
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    proc = run_command("eval", *tiny(data_dir, run, f"ckpt_path={ckpt}"), check=False)
    error_line(proc, f"cannot write {run / 'results'}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_results_folder_is_one_line_naming_it(trained_run, data_dir, tmp_path):
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    (run / "results").chmod(0o555)
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    try:
        proc = run_command("eval", *tiny(data_dir, run, f"ckpt_path={ckpt}"), check=False)
    finally:
        (run / "results").chmod(0o755)
    error_line(proc, f"cannot write {run / 'results'}", "Permission denied")


def test_a_write_refused_by_permissions_names_the_folder(tmp_path, monkeypatch):
    # what a read-only folder does for a non-root user (root writes anyway)
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".tmp123"))

    monkeypatch.setattr("tempfile.NamedTemporaryFile", refused)
    with pytest.raises(OutputWriteError) as info:
        check_writable(tmp_path)
    assert str(info.value).startswith(f"cannot write {tmp_path}: Permission denied")


def test_resume_from_another_datasets_checkpoint_names_the_classes(trained_run, tmp_path):
    ann = {
        "database": {
            vid: {
                "subset": subset,
                "duration": 100,
                "fps": 1,
                "annotations": [{"label": "jump", "segment": [10, 30]}],
            }
            for vid, subset in (("a", "training"), ("b", "validation"))
        }
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    (tmp_path / "feats").mkdir()
    for vid in ("a", "b"):
        np.save(tmp_path / "feats" / f"{vid}.npy", np.zeros((100, 64), dtype=np.float32))
    last = trained_run / "checkpoints" / "last.ckpt"
    proc = run_command(
        "train",
        "dataset=custom",
        f"dataset.json_file={tmp_path / 'ann.json'}",
        f"dataset.feat_dir={tmp_path / 'feats'}",
        "dataset.input_dim=64",
        "dataset.num_classes=1",
        "dataset.test_subset=[validation]",
        "dataset.num_workers=0",
        "model.d_emb=32",
        "model.n_heads=2",
        "model.head_width=32",
        "model.l3=3",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"ckpt_path={last}",
        check=False,
    )
    error_line(proc, str(last), "trained on 8 classes", "the current dataset has 1")


def test_resume_with_another_model_size_names_the_first_parameter(trained_run, data_dir):
    last = trained_run / "checkpoints" / "last.ckpt"
    cfg = compose("train", tiny(data_dir, trained_run, "model.head_width=16"))
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    # the first tensor that head_width changes: the classification head's first conv,
    # (width, d_emb, kernel 3) = (32, 32, 3) trained, (16, 32, 3) now
    with pytest.raises(CheckpointMismatchError) as info:
        check_resume_checkpoint(last, read_checkpoint(last), module, datamodule)
    message = str(info.value)
    assert message.startswith(f"{last}: ") and "\n" not in message
    assert "first difference: detector.network.cls_head.trunk.layers.0.conv.weight" in message
    assert "(32, 32, 3) in the checkpoint, (16, 32, 3) in the model of this config" in message


def test_load_state_dict_size_mismatch_is_one_line(tmp_path):
    module = torch.nn.Linear(2, 2)
    state = {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}
    with pytest.raises(CheckpointMismatchError, match="size mismatch for weight") as info:
        load_state_dict_checked(module, state, tmp_path / "x.ckpt")
    assert str(tmp_path / "x.ckpt") in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------
# 4. hyper-parameters that lie about the model's size
def crafted(trained_run: Path, path: Path, state_dict: dict, **network) -> Path:
    ckpt = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    hparams["model"]["network"].update(network)
    torch.save({"hyper_parameters": hparams, "state_dict": state_dict}, path)
    return path


def test_huge_hyper_parameters_fail_fast(trained_run, tmp_path):
    path = crafted(trained_run, tmp_path / "huge.ckpt", {"w": torch.zeros(4)}, d_emb=65536)
    start = time.perf_counter()
    with pytest.raises(CheckpointMismatchError, match=r"model\.network\.d_emb=65536") as info:
        load_checkpoint(path)
    assert time.perf_counter() - start < 0.5
    assert "outside the supported range" in str(info.value) and str(path) in str(info.value)


def test_hyper_parameters_that_do_not_match_the_weights_are_refused(trained_run, tmp_path):
    real = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    held = sum(t.numel() for t in real.values())
    # within the limits, but twice the width the weights were trained with (32)
    path = crafted(trained_run, tmp_path / "wide.ckpt", real, d_emb=64, head_width=64)
    start = time.perf_counter()
    with pytest.raises(CheckpointMismatchError, match="first difference: detector") as info:
        load_checkpoint(path)
    assert time.perf_counter() - start < 5
    assert f"the checkpoint's state dict {held:,}" in str(info.value)


def test_a_tensor_claiming_more_values_than_it_stores_is_refused(trained_run, tmp_path):
    real = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    name = "detector.network.cls_head.trunk.layers.0.conv.weight"
    state = {**real, name: torch.zeros(1).expand(real[name].shape)}
    path = crafted(trained_run, tmp_path / "expanded.ckpt", state)
    with pytest.raises(CheckpointMismatchError, match="a crafted checkpoint") as info:
        load_checkpoint(path)
    assert name in str(info.value)


# --------------------------------------------------------------------------------------
# 5. plots that cannot be written are counted, training goes on
def test_full_disk_while_plotting_does_not_stop_training(data_dir, tmp_path):
    run = tmp_path / "run"
    run_command(
        "train",
        *tiny(
            data_dir,
            run,
            "callbacks.visualization.every_n_epochs=1",
            "test_after_fit=false",
            "+callbacks.disk_full._target_=helpers.callbacks.DiskFullSavefig",
        ),
    )
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1
    log_text = (run / "train.log").read_text()
    assert log_text.count("No space left on device") == EPOCHS * FIGURES_PER_EPOCH
    for epoch in range(EPOCHS):
        folder = run / "plots" / f"epoch_{epoch:03d}"
        assert not list(folder.glob("*.png"))
        assert (folder / "per_class_ap.csv").is_file()  # not a figure: still written
    with (run / "csv" / "version_0" / "metrics.csv").open() as f:
        counts = [float(r["viz/failures"]) for r in csv.DictReader(f) if r.get("viz/failures")]
    assert counts == [FIGURES_PER_EPOCH * (e + 1) for e in range(EPOCHS)]


def test_wandb_media_errors_are_counted_not_raised(tmp_path):
    import wandb.errors
    from lightning.pytorch.loggers import WandbLogger

    logged: list[dict] = []

    class BrokenWandb(WandbLogger):
        def __init__(self) -> None:  # no W&B run: only the calls the callback makes
            pass

        def log_image(self, key, images, step=None, **kwargs):
            raise wandb.errors.CommError("network unreachable")

        def log_table(self, key, columns=None, data=None, step=None, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        def log_metrics(self, metrics, step=None):
            logged.append(dict(metrics))

    callback = visualization_callback(every_n_epochs=1)
    trainer = SimpleNamespace(
        loggers=[BrokenWandb()], global_step=7, current_epoch=0, default_root_dir=tmp_path
    )
    figures = {"a": Figure(figsize=(2, 2)), "b": Figure(figsize=(2, 2))}
    callback.log_figures(trainer, figures, [("jump", 0.5)])
    assert callback.failures == 3  # two images, one table
    assert logged == [{"viz/failures": 3.0}]
    # the run folder has them all the same
    folder = tmp_path / "plots" / "epoch_000"
    assert {p.name for p in folder.iterdir()} == {"a.png", "b.png", "per_class_ap.csv"}


def test_an_error_in_a_data_loader_worker_is_one_line(tmp_path):
    """torch re-raises a worker's error with the worker's traceback inside the message; the
    user sees the original message only."""
    from torch.utils.data import DataLoader, Dataset

    from asl_tal.data.features import FeatureError

    class Broken(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int):
            raise FeatureError("feats/v1.npy: video 'v1': truncated file")

    with pytest.raises(FeatureError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)  # what torch hands over
    assert one_line_message(caught.value) == "feats/v1.npy: video 'v1': truncated file"
    assert one_line_message(ValueError("plain")) == "plain"
