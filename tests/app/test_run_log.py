"""What a run writes about itself without any tracker: one plain line per epoch in the log and
on a console that is not a terminal, ``metrics.csv``, plots under readable names, the closing
summary; and none of the dependencies' adverts and deprecation notices."""

from __future__ import annotations

import csv
import io
import logging
import re
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.commands import Result, run_command
from helpers.runs import read_json, tiny
from torch.utils.data import DataLoader

from asl_tal.run_log import EpochLog, closing_summary, on_terminal

EPOCHS = 3  # debug=tiny: 1 warm-up + 2 epochs
# what the dependencies print on every run unless filtered
NOISE = ("💡 Tip", "LeafSpec", "anonymous setting", "setup plugin")


def epoch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"\] - epoch \d+/\d+ ", line)]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def batch_run(data_dir, tmp_path_factory) -> tuple[Result, Path]:
    """``asl-train`` with the default logger (W&B, offline) and plots every epoch, its output
    captured (no terminal) as under nohup or SLURM."""
    run_dir = tmp_path_factory.mktemp("batch_run")
    overrides = tiny(data_dir, run_dir, "logger=wandb", "callbacks.visualization.every_n_epochs=1")
    result = run_command("train", *overrides, env={"WANDB_MODE": "offline"}, cwd=run_dir)
    return result, run_dir


def test_a_batch_run_prints_one_line_per_epoch_and_no_progress_bar(batch_run):
    proc, run_dir = batch_run
    rows = read_rows(run_dir / "metrics.csv")
    for text in (proc.stdout, (run_dir / "train.log").read_text()):
        lines = epoch_lines(text)
        assert len(lines) == EPOCHS
        for epoch, (line, row) in enumerate(zip(lines, rows, strict=True)):
            assert f"epoch {epoch}/{EPOCHS - 1}  train loss " in line
            assert f"val/average_mAP {float(row['val/average_mAP']):.4f} (best " in line
            assert re.search(r"  \d+\.\d s$", line)
    # no progress bar: neither Rich's "Epoch 2/2 ━━━ 6/6 ... 6.07it/s" nor tqdm's redraws
    output = proc.stdout + proc.stderr
    assert not re.search(r"Epoch \d+/\d+|it/s", output) and "\r" not in output


def test_a_batch_run_writes_metrics_csv_and_readable_plots_with_the_default_logger(
    batch_run, data_dir
):
    _, run_dir = batch_run
    rows = read_rows(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    best = 0.0
    for row in rows:
        per_threshold = [float(row[f"val/mAP@{t}"]) for t in (0.3, 0.4, 0.5, 0.6, 0.7)]
        assert float(row["val/average_mAP"]) == pytest.approx(sum(per_threshold) / 5)
        best = max(best, float(row["val/average_mAP"]))
        assert float(row["val/average_mAP_best"]) == pytest.approx(best)
        assert float(row["train/loss"]) > 0 and float(row["time_s"]) > 0
    # the first validation batch's first video, named in the file
    annotations = read_json(data_dir / "synthetic_tiny" / "annotations.json")
    val_videos = {v for v, e in annotations["database"].items() if e["subset"] == "validation"}
    for epoch in range(EPOCHS):
        folder = run_dir / "plots" / f"epoch_{epoch:03d}"
        (timeline,) = folder.glob("timeline_*.png")
        assert timeline.stem.removeprefix("timeline_") in val_videos
        assert {"pr_curves.png", "per_class_ap.png", "per_class_ap.csv"} <= {
            p.name for p in folder.iterdir()
        }
    # and the same images went to W&B
    media = {p.name.split("_")[0] for p in run_dir.glob("wandb/*/files/media/images/viz/*.png")}
    assert media == {"sensitivity", "timeline", "pr", "per"}


def test_a_run_ends_with_its_summary_line(batch_run):
    proc, run_dir = batch_run
    rows = read_rows(run_dir / "metrics.csv")
    best = max(rows, key=lambda r: float(r["val/average_mAP"]))
    tested = read_json(run_dir / "results" / "test_metrics.json")
    last = proc.stdout.rstrip().splitlines()[-1]
    assert last.endswith(
        f"done: best val/average_mAP {float(best['val/average_mAP']):.4f} "
        f"(epoch {best['epoch']}), test average mAP {tested['average_mAP']:.4f} "
        f"({tested['weights']} weights); run folder {run_dir}"
    )


def test_a_run_prints_no_adverts_or_dependency_deprecations(batch_run):
    proc, run_dir = batch_run
    for text in (proc.stdout, proc.stderr, (run_dir / "train.log").read_text()):
        for noise in NOISE:
            assert noise not in text


# --------------------------------------------------------------------------------------
# the callback on a scripted module: values by hand
VAL_MAP = [0.2, 0.5, 0.3]


class Scripted(L.LightningModule):
    """Logs ``train/loss`` 1, 2, 3 and ``train/cls`` half of it at the three steps of every
    epoch, except that the third step of epoch 1 is skipped (returns None); logs
    ``val/average_mAP`` ``VAL_MAP[epoch]``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 2:
            return None
        value = float(batch_idx + 1)
        self.log("train/loss", value)
        self.log("train/cls", value / 2)
        return self.w.sum() * 0 + value

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/average_mAP", VAL_MAP[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.25)

    def train_dataloader(self):
        return DataLoader(torch.zeros(3, 1), batch_size=1)

    def val_dataloader(self):
        return DataLoader(torch.zeros(1, 1), batch_size=1)


def fit_scripted(
    root: Path, max_epochs: int = 3, ckpt_path: Path | None = None
) -> tuple[L.Trainer, EpochLog]:
    epoch_log = EpochLog(
        monitor="val/average_mAP", mode="max", filename="metrics.csv", ties="latest"
    )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[epoch_log],
    )
    trainer.fit(Scripted(), ckpt_path=ckpt_path)
    return trainer, epoch_log


def test_epoch_lines_and_rows_by_hand(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="asl_tal.epochs"):
        trainer, epoch_log = fit_scripted(tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "asl_tal.epochs"]
    # means: (1 + 2 + 3) / 3 = 2; epoch 1 without its skipped third step: (1 + 2) / 2 = 1.5
    expected = [
        "epoch 0/2  train loss 2.0000 (cls 1)  val/average_mAP 0.2000 (best 0.2000, epoch 0)",
        "epoch 1/2  train loss 1.5000 (cls 0.75)  val/average_mAP 0.5000 (best 0.5000, epoch 1)",
        "epoch 2/2  train loss 2.0000 (cls 1)  val/average_mAP 0.3000 (best 0.5000, epoch 1)",
    ]
    assert [re.sub(r"  \d+\.\d s$", "", line) for line in lines] == expected

    rows = read_rows(tmp_path / "metrics.csv")
    # Lightning steps the optimizer at a skipped step too: 3 steps an epoch
    assert [(r["epoch"], r["step"], r["lr"]) for r in rows] == [
        ("0", "3", "0.25"),
        ("1", "6", "0.25"),
        ("2", "9", "0.25"),
    ]
    assert [float(r["train/loss"]) for r in rows] == [2.0, 1.5, 2.0]
    assert [float(r["val/average_mAP"]) for r in rows] == pytest.approx(VAL_MAP)
    assert [float(r["val/average_mAP_best"]) for r in rows] == pytest.approx([0.2, 0.5, 0.5])
    assert closing_summary(trainer, tmp_path) == (
        f"done: best val/average_mAP 0.5000 (epoch 1), not tested; run folder {tmp_path}"
    )
    assert epoch_log.state_dict() == {"best": 0.5, "best_epoch": 1}


def test_a_run_resumed_in_its_folder_keeps_the_rows_before_its_epoch(tmp_path):
    first, _ = fit_scripted(tmp_path, max_epochs=2)
    checkpoint = tmp_path / "last.ckpt"
    first.save_checkpoint(checkpoint)
    # a row the killed run wrote after its last checkpoint: the resumed run writes it again
    with (tmp_path / "metrics.csv").open("a") as f:
        f.write("2,9,0.0,0.25,99.0,99.0,0.99,0.99\n")
    _, epoch_log = fit_scripted(tmp_path, max_epochs=3, ckpt_path=checkpoint)
    rows = read_rows(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["train/loss"]) for r in rows] == [2.0, 1.5, 2.0]
    # the best of the epochs before the resume comes back with the checkpoint
    assert [float(r["val/average_mAP_best"]) for r in rows] == pytest.approx([0.2, 0.5, 0.5])
    assert (epoch_log.best, epoch_log.best_epoch) == (0.5, 1)


@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_bar_shows_on_a_terminal_only(terminal, tmp_path, monkeypatch):
    monkeypatch.setattr("asl_tal.run_log.on_terminal", lambda: terminal)
    trainer, _ = fit_scripted(tmp_path)
    assert trainer.progress_bar_callback.is_enabled is terminal


def test_on_terminal_needs_both_streams_to_be_terminals(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert on_terminal()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # 2> file
    assert not on_terminal()


def test_mode_must_be_max_or_min():
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        EpochLog(monitor="val/average_mAP", mode="best", filename="metrics.csv", ties="latest")
