"""A user's first day, through the console scripts of the installed wheel, from folders that
are not the repository: train on their own data, re-test and predict with nothing but the
checkpoint, a refused ``trainer.max_epochs``, a killed run resumed in its own folder, and no
noise from the dependencies.

``make wheel-check`` (CI) installs the built wheel into ``.venv-wheel``; these tests run when
``ASL_TAL_WHEEL_BIN`` names that environment's ``bin`` folder and are skipped otherwise.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

WHEEL_BIN = os.environ.get("ASL_TAL_WHEEL_BIN")
TESTS = Path(__file__).resolve().parent  # helpers.callbacks.KillAtStep, for the resume test
CLASSES = ("squat", "lunge", "plank")
NOISE = ("💡 Tip", "LeafSpec", "anonymous setting", "setuptools", "Traceback")
TRAIN_VIDEOS, BATCH = 16, 2  # 8 steps an epoch
EPOCHS = 3  # 1 warm-up + 2


def console(name: str, *args: str, cwd: Path, env: dict | None = None):
    """``<wheel bin>/name args`` in ``cwd``, output captured (not a terminal)."""
    if WHEEL_BIN is None:
        pytest.skip("set ASL_TAL_WHEEL_BIN to the bin folder of an installed wheel")
    full_env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("WANDB_API_KEY", None)
    return subprocess.run(
        [str(Path(WHEEL_BIN) / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )


def write_dataset(root: Path) -> None:
    """16 training and 4 test videos of 48 steps at 1 fps, 16-wide features, one action of
    each class per video, in the layout of docs/data.md."""
    rng = np.random.default_rng(0)
    database = {}
    (root / "features").mkdir(parents=True)
    videos = [(f"train_{i:02d}", "train") for i in range(TRAIN_VIDEOS)]
    videos += [(f"test_{i:02d}", "test") for i in range(4)]
    for video_id, subset in videos:
        feats = rng.normal(0.0, 0.1, (48, 16)).astype(np.float32)
        annotations = []
        for c, label in enumerate(CLASSES):
            start = 4 + 14 * c
            feats[start : start + 8, c] += 1.0
            annotations.append({"label": label, "segment": [start + 0.5, start + 8.5]})
        np.save(root / "features" / f"{video_id}.npy", feats)
        database[video_id] = {
            "subset": subset,
            "duration": 48.0,
            "fps": 1.0,
            "annotations": annotations,
        }
    (root / "annotations.json").write_text(json.dumps({"database": database}))


def train_args(root: Path) -> list[str]:
    return [
        "dataset=custom",
        "dataset.name=mine",
        f"dataset.root={root}",
        "dataset.json_file=annotations.json",
        "dataset.feat_dir=features",
        "dataset.input_dim=16",
        f"dataset.num_classes={len(CLASSES)}",
        "dataset.train_subset=[train]",
        "dataset.val_subset=[test]",
        "dataset.test_subset=[test]",
        f"dataset.batch_size={BATCH}",
        "dataset.num_workers=0",
        "dataset.max_seq_len=64",
        "model.d_emb=32",
        "model.n_heads=2",
        "model.head_width=32",
        "model.l2=1",
        "model.l3=3",
        "scheduler.warmup_epochs=1",
        f"scheduler.epochs={EPOCHS - 1}",
        "callbacks.visualization.every_n_epochs=1",
    ]


def no_noise(*texts: str) -> None:
    for text in texts:
        for noise in NOISE:
            assert noise not in text, f"{noise!r} in the output"


def only_run_folder(parent: Path) -> Path:
    (run,) = parent.iterdir()
    return run


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """``asl-train`` on the user's own data from a working folder of theirs."""
    home = tmp_path_factory.mktemp("user")
    write_dataset(home / "my_data")
    work = home / "work"
    work.mkdir()
    proc = console("asl-train", *train_args(home / "my_data"), cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, proc, only_run_folder(work / "outputs" / "train" / "mine")


def test_installing_the_wheel_printed_no_setuptools_line():
    """``make wheel-check`` keeps the wheel install's output in ``.venv-wheel/install.log``."""
    if WHEEL_BIN is None:
        pytest.skip("set ASL_TAL_WHEEL_BIN to the bin folder of an installed wheel")
    log = (Path(WHEEL_BIN).parent / "install.log").read_text()
    # setuptools' warnings name their class or the module that emits them
    pattern = r"Setuptools\w*Warning|BuildBackendWarning|site-packages/setuptools/|Traceback"
    assert [line for line in log.splitlines() if re.search(pattern, line)] == []


def test_a_batch_run_prints_one_plain_line_per_epoch_and_no_noise(first_run):
    _, proc, run = first_run
    epoch_lines = [line for line in proc.stdout.splitlines() if re.search(r"\bepoch \d+/", line)]
    assert len(epoch_lines) == EPOCHS
    assert all("val/average_mAP" in line for line in epoch_lines)
    assert proc.stdout.rstrip().splitlines()[-1].endswith(f"run folder {run}")
    no_noise(proc.stdout, proc.stderr, (run / "train.log").read_text())


def test_the_run_folder_holds_the_epoch_table_and_the_plots(first_run):
    _, _, run = first_run
    with (run / "metrics.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(EPOCHS))
    assert list((run / "plots").glob("epoch_*/*.png"))
    tested = json.loads((run / "results" / "test_metrics.json").read_text())
    assert tested["weights"] == "last"  # it validated on its test videos


def test_eval_and_predict_need_only_the_checkpoint(first_run):
    home, _, run = first_run
    elsewhere = home / "elsewhere"
    elsewhere.mkdir()
    ckpt = run / "checkpoints" / "best.ckpt"
    proc = console("asl-eval", f"ckpt_path={ckpt}", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = only_run_folder(elsewhere / "outputs" / "eval" / "mine") / "results"
    assert 0.0 <= json.loads((metrics / "test_metrics.json").read_text())["average_mAP"] <= 1.0
    proc = console(
        "asl-predict", f"ckpt_path={ckpt}", f"input={home / 'my_data' / 'features'}", cwd=elsewhere
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = only_run_folder(elsewhere / "outputs" / "predict" / "mine") / "results"
    results = json.loads(next(predictions.glob("*.json")).read_text())["results"]
    assert len(results) == TRAIN_VIDEOS + 4
    no_noise(proc.stdout, proc.stderr)


def test_trainer_max_epochs_off_the_schedule_is_one_error_line(first_run, tmp_path):
    home, _, _ = first_run
    proc = console("asl-train", *train_args(home / "my_data"), "trainer.max_epochs=2", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: trainer.max_epochs=2")
    assert "scheduler.warmup_epochs" in line and "scheduler.epochs" in line
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.ckpt"))


def test_a_killed_run_resumes_in_its_folder_with_its_best_score(first_run, tmp_path):
    home, _, _ = first_run
    args = train_args(home / "my_data")
    killed = console(
        "asl-train",
        *args,
        "+callbacks.kill._target_=helpers.callbacks.KillAtStep",
        "+callbacks.kill.step=12",  # in the second epoch, after the first one's last.ckpt
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS)},
    )
    assert killed.returncode == -9
    run = only_run_folder(tmp_path / "outputs" / "train" / "mine")
    proc = console(
        "asl-train", *args, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert only_run_folder(tmp_path / "outputs" / "train" / "mine") == run  # no second folder
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    best = max(float(row["val/average_mAP"]) for row in rows)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    (state,) = [
        state
        for key, state in last["callbacks"].items()
        if key.startswith("ModelCheckpoint") and "'monitor': None" not in key
    ]
    assert float(state["best_model_score"]) == pytest.approx(best, abs=1e-6)
    no_noise(proc.stdout, proc.stderr)
