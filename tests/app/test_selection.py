"""Which epoch a run keeps as its best when two epochs score the same."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from asl_tal.conf import compose
from torch.utils.data import DataLoader

from asl_tal.run_log import EpochLog
from asl_tal.selection import BestCheckpoint, improves

# a held-out share scored perfectly from epoch 1 on, with a dip at epoch 2
SCORES = [0.5, 1.0, 0.75, 1.0, 1.0, 0.875]  # exact in float32


class ScriptedScores(L.LightningModule):
    """Logs ``val/average_mAP`` = ``scores[epoch]``; trains nothing that matters."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return self.w.sum() * 0

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/average_mAP", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(torch.zeros(1, 1), batch_size=1)

    def val_dataloader(self):
        return DataLoader(torch.zeros(1, 1), batch_size=1)


def fit(tmp_path, scores: list[float], mode: str, ties: str) -> tuple[BestCheckpoint, EpochLog]:
    checkpoint = BestCheckpoint(
        dirpath=str(tmp_path),
        filename="best",
        monitor="val/average_mAP",
        mode=mode,
        save_top_k=1,
        save_last=False,
        save_weights_only=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
        ties=ties,
    )
    epoch_log = EpochLog(monitor="val/average_mAP", mode=mode, filename="metrics.csv", ties=ties)
    trainer = L.Trainer(
        max_epochs=len(scores),
        accelerator="cpu",
        logger=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[checkpoint, epoch_log],
    )
    trainer.fit(ScriptedScores(scores))
    return checkpoint, epoch_log


def saved_epoch(checkpoint: BestCheckpoint) -> int:
    return torch.load(checkpoint.best_model_path, weights_only=False)["epoch"]


@pytest.mark.parametrize(("ties", "epoch"), [("latest", 4), ("earliest", 1)])
def test_the_kept_checkpoint_and_the_reported_epoch_follow_the_tie_rule(tmp_path, ties, epoch):
    checkpoint, epoch_log = fit(tmp_path, SCORES, "max", ties)
    assert saved_epoch(checkpoint) == epoch
    assert float(checkpoint.best_model_score) == 1.0
    assert (epoch_log.best, epoch_log.best_epoch) == (1.0, epoch)
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["best.ckpt"]


def test_a_loss_monitored_with_mode_min_keeps_its_latest_lowest_epoch(tmp_path):
    checkpoint, epoch_log = fit(tmp_path, [0.875, 0.25, 0.5, 0.25, 0.375], "min", "latest")
    assert saved_epoch(checkpoint) == 3
    assert (epoch_log.best, epoch_log.best_epoch) == (0.25, 3)


@pytest.mark.parametrize(
    ("value", "best", "mode", "ties", "expected"),
    [
        (0.3, None, "max", "earliest", True),
        (0.6, 0.5, "max", "earliest", True),
        (0.4, 0.5, "max", "latest", False),
        (0.5, 0.5, "max", "latest", True),
        (0.5, 0.5, "max", "earliest", False),
        (0.4, 0.5, "min", "earliest", True),
        (0.5, 0.5, "min", "latest", True),
    ],
)
def test_improves_by_hand(value, best, mode, ties, expected):
    assert improves(value, best, mode, ties) is expected


def test_the_defaults_keep_the_latest_tied_epoch_and_the_epoch_log_follows_the_checkpoint():
    cfg = compose("train", [])
    assert cfg.callbacks.model_checkpoint.ties == "latest"
    assert cfg.callbacks.epoch_log.ties == "latest"
    assert (
        compose("train", ["callbacks.model_checkpoint.ties=earliest"]).callbacks.epoch_log.ties
        == "earliest"
    )
    assert (
        compose("train", ["callbacks.model_checkpoint=null"]).callbacks.epoch_log.ties == "latest"
    )
