"""scripts/table_c.py: the Table c rows compose, a multirun runs them, the table is right."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from asl_tal.conf import compose
from helpers.runs import write_test_scores

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import table_c  # noqa: E402  (scripts/ is not a package)

SWITCHES = {  # row -> (class_level, instance_level, ASCL on)
    "baseline": (False, False, False),
    "inst": (False, True, False),
    "class": (True, False, False),
    "asl": (True, True, False),
    "asl_ascl": (True, True, True),
}


@pytest.mark.parametrize("row", sorted(SWITCHES))
def test_each_row_sets_its_switches_on_any_dataset(row):
    cfg = compose("train", [f"ablation={row}", "dataset=epic_verb"])
    class_level, instance_level, ascl_on = SWITCHES[row]
    assert cfg.model.sensitivity.class_level is class_level
    assert cfg.model.sensitivity.instance_level is instance_level
    assert (cfg.model.ascl.weight > 0) is ascl_on
    assert cfg.dataset.name == "epic_verb"  # the row changes the model switches only


@pytest.mark.parametrize("row", sorted(SWITCHES))
def test_only_the_inst_row_normalises_h_per_gt(row):
    """h = q alone has mean q (< 1) on the positives; the row rescales it to mean 1 per GT."""
    cfg = compose("train", [f"ablation={row}"])
    expected = "gt" if row == "inst" else "none"
    assert cfg.model.sensitivity.weight_normalize == expected


@pytest.mark.parametrize("row", sorted(SWITCHES))
def test_the_thumos_experiment_rows_are_the_ablation_rows(row):
    """experiment=thumos_<row> is ablation=<row> on THUMOS14: one Table c, not two."""
    experiment = compose("train", [f"experiment=thumos_{row}"])
    ablation = compose("train", [f"ablation={row}", "dataset=thumos14"])
    assert experiment.model == ablation.model
    assert experiment.dataset == ablation.dataset


def write_job(
    sweep: Path, num: int, row: str, seed: int, last: float | None, selected: float | None = None
) -> None:
    """A finished job as the train entry point leaves it: ``test_metrics.json`` of the tested
    weights (the selected checkpoint's when there is one) and, beside a selected checkpoint,
    ``test_last_metrics.json``. ``last`` None: a failed job (no metrics)."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- ablation={row}\n- seed={seed}\n")
    if last is not None:
        write_test_scores(job / "results", last, selected)


def test_collect_means_sample_sd_and_failed_jobs(tmp_path):
    write_job(tmp_path, 0, "asl", 1, 0.50)
    write_job(tmp_path, 1, "asl", 0, 0.40)
    write_job(tmp_path, 2, "asl", 2, 0.60)
    write_job(tmp_path, 3, "baseline", 0, 0.30)
    write_job(tmp_path, 4, "baseline", 1, None)  # failed: no metrics
    table = table_c.collect(tmp_path)
    assert list(table["rows"]) == ["baseline", "asl"]  # Table c order
    asl = table["rows"]["asl"]
    assert asl["seeds"] == [0, 1, 2] and asl["last"]["values"] == [0.40, 0.50, 0.60]
    assert asl["last"]["mean"] == pytest.approx(0.50)
    assert asl["last"]["sd"] == pytest.approx(0.10)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    assert asl["selected"]["mean"] is None  # these runs validated on their test videos
    baseline = table["rows"]["baseline"]
    assert baseline["last"]["mean"] == pytest.approx(0.30) and baseline["last"]["sd"] is None
    assert baseline["failed_seeds"] == [1]
    text = table_c.markdown(table)
    assert "| +ASL | 50.00 ± 10.00 | 0: 40.00, 1: 50.00, 2: 60.00 | — | — | — |" in text
    assert "| baseline | 30.00 | 0: 30.00 | — | — | 1 |" in text


def test_collect_reports_the_selected_checkpoint_beside_the_last_epoch(tmp_path):
    write_job(tmp_path, 0, "asl", 0, last=0.70, selected=0.80)
    write_job(tmp_path, 1, "asl", 1, last=0.60, selected=0.90)
    asl = table_c.collect(tmp_path)["rows"]["asl"]
    assert asl["last"]["values"] == [0.70, 0.60]
    assert asl["selected"]["values"] == [0.80, 0.90]
    assert asl["selected"]["mean"] == pytest.approx(0.85)
    assert asl["selected"]["sd"] == pytest.approx(0.05 * 2**0.5)  # sqrt((.05^2 + .05^2) / 1)
    text = table_c.markdown(table_c.collect(tmp_path))
    assert (
        "| +ASL | 65.00 ± 7.07 | 0: 70.00, 1: 60.00 | 85.00 ± 7.07 | 0: 80.00, 1: 90.00 |" in text
    )


@pytest.mark.slow  # two tiny trainings: in .ci/run's slow step
def test_two_rows_run_as_one_multirun(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the sweep's training processes inherit it
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    status = table_c.main(
        [
            "--out",
            str(out),
            "--seeds",
            "0",
            "--rows",
            "baseline",
            "asl",
            "--",
            "debug=tiny",
            f"paths.data_dir={tmp_path / 'data'}",
            "logger=none",
            "trainer.accelerator=cpu",
        ]
    )
    assert status == 0
    table = json.loads((out / "table_c.json").read_text())
    assert list(table["rows"]) == ["baseline", "asl"]
    for entry in table["rows"].values():
        assert entry["seeds"] == [0] and entry["failed_seeds"] == []
        # the tiny config validates on its own subset: both scores are reported
        for kind in ("last", "selected"):
            assert 0.0 <= entry[kind]["mean"] <= 1.0 and not math.isnan(entry[kind]["mean"])
    assert (out / "table_c.md").read_text().startswith("| row | last epoch")
