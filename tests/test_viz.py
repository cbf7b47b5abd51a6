"""Figures of ``asl_tal.viz`` and the ``VisualizationCallback``.

The suite's tiny run (``trained_run``: the real entry point, the callback rendering every
epoch) gives the model and its plots; they are checked for what they claim to show, against
values worked out by hand or straight from the definitions.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import lightning as L
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from asl_tal.conf import compose
from helpers.model_defaults import visualization_callback
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from asl_tal import viz
from asl_tal.callbacks import VisualizationCallback
from asl_tal.checkpoints import load_checkpoint
from asl_tal.cli.build import build_datamodule
from asl_tal.data.annotations import VideoAnnotation
from asl_tal.postprocess.decode import Detections

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "research"))
import sensitivity_profile  # scripts/research/ is not a package

EPOCHS = 3  # debug=tiny: 2 epochs + 1 warm-up
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_overrides(data_dir: Path) -> list[str]:
    return ["debug=tiny", f"paths.data_dir={data_dir}", "trainer.accelerator=cpu"]


@pytest.fixture(scope="session")
def viz_run(data_dir, trained_run) -> tuple[Path, Path]:
    """``(data_dir, run_dir)`` of the suite's tiny run, whose callback renders every epoch."""
    return data_dir, trained_run


@pytest.fixture(scope="session")
def trained(viz_run):
    """``(module, datamodule, first validation batch)`` of the tiny run's best checkpoint."""
    data_dir, run_dir = viz_run
    cfg = compose("train", tiny_overrides(data_dir))
    module = load_checkpoint(run_dir / "checkpoints" / "best.ckpt").eval()
    datamodule = build_datamodule(cfg, l3=module.detector.network.l3)
    datamodule.prepare_data()
    datamodule.setup("validate")
    batch = next(iter(datamodule.val_dataloader()))
    return module, datamodule, batch


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    image = mpimg.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01, f"{path} is blank"


def lines_by_gid(fig) -> dict[str, list]:
    out: dict[str, list] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_gid():
                out.setdefault(line.get_gid(), []).append(line)
    return out


# --------------------------------------------------------------------------------------
# callback
def test_callback_writes_pngs_each_epoch_of_csv_run(viz_run, trained):
    _, run_dir = viz_run
    batch = trained[2]
    # the first validation batch's first video has the timeline; the sensitivity plots are of
    # the two longest GT instances of that batch (rank, then video)
    lengths = sorted(
        ((len(r["frames"]), batch.meta[r["video"]].video_id) for r in sensitivity_records(trained)),
        key=lambda item: -item[0],
    )
    expected = {
        f"sensitivity_0_{lengths[0][1]}.png",
        f"sensitivity_1_{lengths[1][1]}.png",
        f"timeline_{batch.meta[0].video_id}.png",
        "pr_curves.png",
        "per_class_ap.png",
        "per_class_ap.csv",
    }
    for epoch in range(EPOCHS):
        folder = run_dir / "plots" / f"epoch_{epoch:03d}"
        assert {p.name for p in folder.iterdir()} == expected
        for name in expected - {"per_class_ap.csv"}:
            assert_png(folder / name)


def test_callback_ap_table_matches_logged_average_map(viz_run):
    """The mean of the per-class AP file equals the ``val/average_mAP`` the module logged."""
    _, run_dir = viz_run
    with (run_dir / "csv" / "version_0" / "metrics.csv").open() as f:
        logged = {
            int(row["epoch"]): float(row["val/average_mAP"])
            for row in csv.DictReader(f)
            if row.get("val/average_mAP")
        }
    for epoch in range(EPOCHS):
        with (run_dir / "plots" / f"epoch_{epoch:03d}" / "per_class_ap.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert rows, "no class with GT"
        mean = np.mean([float(r["average_AP"]) for r in rows])
        assert mean == pytest.approx(logged[epoch], abs=1e-6)


def validate_with(callback: VisualizationCallback, trained, root: Path) -> L.Trainer:
    """Run ``trainer.validate`` without a logger on the tiny checkpoint, with ``callback``."""
    module, datamodule, _ = trained
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=root,
        callbacks=[callback],
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return trainer


def test_callback_without_logger_in_validate(trained, tmp_path):
    validate_with(
        visualization_callback(every_n_epochs=1, num_instances=1, num_videos=2), trained, tmp_path
    )
    folder = tmp_path / "plots" / "epoch_000"
    names = {p.name for p in folder.iterdir()}
    first, second = (m.video_id for m in trained[2].meta[:2])
    assert {f"timeline_{first}.png", f"timeline_{second}.png", "pr_curves.png"} <= names
    assert len([n for n in names if n.startswith("sensitivity_0_")]) == 1
    assert not [n for n in names if n.startswith("sensitivity_1_")]


def test_callback_leaves_the_global_rng_as_it_found_it(trained, tmp_path):
    """Plots on or off must not change a run: rendering restores the global RNG state."""
    callback = visualization_callback(every_n_epochs=1, num_instances=1, num_videos=1)
    trainer = validate_with(callback, trained, tmp_path)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    callback.on_validation_end(trainer, trained[0])
    assert torch.equal(torch.get_rng_state(), before)
    video = trained[2].meta[0].video_id
    assert (tmp_path / "plots" / "epoch_000" / f"timeline_{video}.png").exists()


def test_callback_rejects_bad_period():
    with pytest.raises(ValueError, match="every_n_epochs"):
        visualization_callback(every_n_epochs=0)


# --------------------------------------------------------------------------------------
# sensitivity
def test_sensitivity_by_position_by_hand():
    a = {"frames": np.arange(10), "h_cls": [5, 4, 3, 2, 1, 1, 2, 3, 4, 5], "q_cls": None}
    # 7 frames split 2 / 2 / 1 / 1 / 1: frame 3, the lowest, is in the second part
    d = {"frames": np.arange(7), "h_cls": [2, 2, 2, 1, 2, 2, 2], "q_cls": None}
    short = {"frames": np.arange(3), "h_cls": [0, 0, 0], "q_cls": None}
    table = viz.sensitivity_by_position([a, d, short], parts=5)
    assert table["count"] == 2 and set(table) == {"count", "h_cls"}
    # part means a: 4.5 2.5 1 2.5 4.5, d: 2 1.5 2 2 2
    assert table["h_cls"]["means"] == pytest.approx([3.25, 2.0, 1.5, 2.25, 3.25])
    # sd / mean: a sqrt(2) / 3; d sqrt(6/49) / (13/7); the median of two is their mean
    spread = (math.sqrt(2) / 3 + math.sqrt(6 / 49) / (13 / 7)) / 2
    assert table["h_cls"]["spread"] == pytest.approx(spread)
    assert table["h_cls"]["lowest"] == [0, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="5 frames or more"):
        viz.sensitivity_by_position([short])


def test_sensitivity_profile_script_on_a_trained_checkpoint(viz_run):
    data_dir, run_dir = viz_run
    table = sensitivity_profile.profile(
        str(run_dir / "checkpoints" / "best.ckpt"), tiny_overrides(data_dir), parts=3
    )
    curves = {"p_cls", "q_cls", "h_cls", "p_loc", "q_loc", "h_loc"}
    assert set(table) == curves | {"count"} and table["count"] > 0
    assert all(sum(table[c]["lowest"]) == table["count"] for c in curves)
    # h = p + q frame by frame, so the part means add up too
    for kind in ("cls", "loc"):
        p, q, h = (np.array(table[f"{c}_{kind}"]["means"]) for c in "pqh")
        assert h == pytest.approx(p + q, rel=1e-4)
    text = sensitivity_profile.markdown(table, 3)
    assert text.count("\n| `") == len(curves) and "| part 1 | part 2 | part 3 |" in text


def sensitivity_records(trained) -> list[dict]:
    module, _, batch = trained
    return module.eval_detector.sensitivity_maps(batch)


def longest_record(module, batch):
    records = module.eval_detector.sensitivity_maps(batch)
    return max(records, key=lambda r: len(r["frames"]))


def test_sensitivity_plot_of_trained_model(trained, tmp_path):
    module, datamodule, batch = trained
    record = longest_record(module, batch)
    meta = batch.meta[record["video"]]
    names = list(module.class_names)
    phases = viz.match_phases(record, meta, viz.load_phases(datamodule.json_path), names)
    assert phases is not None
    start_s, end_s = meta.grid_to_seconds(np.asarray(record["segment"], dtype=np.float64))
    # the generator's phases tile the instance
    assert phases["start"][0] == pytest.approx(start_s) and phases["end"][1] == pytest.approx(end_s)
    assert phases["start"][1] == phases["core"][0] and phases["core"][1] == phases["end"][0]

    fig = viz.plot_sensitivity(record, phases, meta, names[record["label"]])
    assert_png(viz.figure_to_png(fig, tmp_path / "sensitivity.png"))
    lines = lines_by_gid(fig)
    curves = {"p_cls", "q_cls", "h_cls", "p_loc", "q_loc", "h_loc"}
    assert set(lines) == curves | {"g_cls", "g_L", "g_R"}
    assert all(len(v) == 1 for v in lines.values())

    seconds = meta.grid_to_seconds(record["frames"].astype(np.float64))
    for name in curves:
        x, y = lines[name][0].get_data()
        np.testing.assert_allclose(x, seconds)
        np.testing.assert_allclose(y, record[name], rtol=1e-6)
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((start_s, end_s))
        assert seconds.min() >= start_s and seconds.max() <= end_s
        spans = {}
        for patch in ax.patches:
            x = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 0]
            spans[patch.get_gid()] = (x.min(), x.max())
        assert set(spans) == set(phases)
        for phase, extent in phases.items():
            assert spans[phase] == pytest.approx(extent)

    # g(x; mu, sigma) with x = (m - t) / L on level 0, straight from the definition
    a, b = record["segment"]
    params = record["gaussians"]
    for gid, part in (("g_cls", "cls"), ("g_L", "L"), ("g_R", "R")):
        x_s, y = lines[gid][0].get_data()
        t = meta.seconds_to_grid(np.asarray(x_s))
        x = ((a + b) / 2 - t) / (b - a)
        mu, sigma = params[f"mu_{part}"], params[f"sigma_{part}"]
        np.testing.assert_allclose(y, np.exp(-((x - mu) ** 2) / (2 * sigma**2)), rtol=1e-5)


def test_sensitivity_plot_draws_only_present_curves():
    record = {
        "video": 0,
        "segment": np.array([2.0, 12.0]),
        "label": 3,
        "frames": np.arange(2, 12),
        "p_cls": np.linspace(0.2, 1.0, 10),
        "p_loc": np.linspace(1.0, 0.2, 10),
        "q_cls": None,
        "q_loc": None,
        "h_cls": np.linspace(0.2, 1.0, 10),
        "h_loc": np.linspace(1.0, 0.2, 10),
        "gaussians": {},
    }
    fig = viz.plot_sensitivity(record)
    lines = lines_by_gid(fig)
    assert sorted(lines) == ["h_cls", "h_loc", "p_cls", "p_loc"]
    assert fig.axes[0].get_xlim() == (2.0, 12.0)
    assert "class 3" in fig.get_suptitle()


def test_phase_means_and_average_by_hand():
    class Meta:  # grid = seconds - 0.5, as the synthetic benchmark
        @staticmethod
        def grid_to_seconds(g):
            return g + 0.5

    record = {
        "frames": np.arange(0, 6),  # centres 0.5 .. 5.5 s
        "h_cls": np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        "q_cls": None,
    }
    phases = {"start": (0.0, 2.0), "core": (2.0, 5.0), "end": (5.0, 6.0)}
    means = viz.phase_means(record, phases, Meta())
    assert means == {"h_cls": {"start": 1.5, "core": 4.0, "end": 6.0}}
    short = viz.phase_means(record, {"start": (0, 1), "core": (1, 6), "end": (6, 6)}, Meta())
    assert np.isnan(short["h_cls"]["end"])
    avg = viz.sensitivity_by_phase([means, short])
    assert avg["h_cls"] == pytest.approx({"start": 1.25, "core": 4.0, "end": 6.0})
    assert avg["count"] == {"start": 2, "core": 2, "end": 1}


def test_load_phases_names_file_and_video(tmp_path):
    path = tmp_path / "ann.json"
    entry = {"label": "a", "segment": [0, 4], "phases": {"start": [0, 1], "core": [1, 3]}}
    path.write_text(json.dumps({"database": {"vid7": {"annotations": [entry]}}}))
    with pytest.raises(ValueError, match=r"ann\.json.*vid7"):
        viz.load_phases(path)


# --------------------------------------------------------------------------------------
# timeline
def test_timeline_of_trained_model_has_one_bar_per_gt(trained, tmp_path):
    module, datamodule, batch = trained
    detections = module.eval_detector.detect(batch, module.postprocess_cfg)
    gt_all = datamodule.annotations("val")
    for meta, dets in zip(batch.meta, detections, strict=True):
        gt = gt_all[meta.video_id]
        fig = viz.plot_timeline(gt, dets, module.class_names, top_k=7)
        ax_gt, ax_det = fig.axes
        bars = [p for p in ax_gt.patches if p.get_gid() == "gt"]
        assert len(bars) == len(ax_gt.patches) == len(gt.labels)
        drawn = sorted((p.get_x(), p.get_x() + p.get_width()) for p in bars)
        np.testing.assert_allclose(drawn, sorted(map(tuple, gt.segments)))
        assert len(ax_det.patches) == min(7, len(dets))
    assert_png(viz.figure_to_png(fig, tmp_path / "timeline.png"))


def test_timeline_colours_by_hand():
    gt = VideoAnnotation(
        video_id="v",
        subset="test",
        duration=100.0,
        fps=1.0,
        segments=np.array([[10.0, 20.0], [30.0, 40.0]]),
        labels=np.array([0, 1]),
    )
    dets = Detections(
        segments=torch.tensor([[50.0, 60.0], [11.0, 20.0], [30.0, 34.0], [10.0, 20.0]]),
        scores=torch.tensor([0.6, 0.8, 0.7, 0.9]),
        labels=torch.tensor([2, 0, 1, 0]),
    )
    # by score: [10,20] c0 takes GT 0 (tIoU 1); [11,20] c0 finds it taken (tIoU 0.9);
    # [30,34] c1 has tIoU 4/10 < 0.5; [50,60] c2 has no GT of its class.
    status, best = viz.match_status(gt, dets, 0.5)
    assert status.tolist() == ["miss", "duplicate", "miss", "match"]
    np.testing.assert_allclose(best, [0.0, 0.9, 0.4, 1.0])

    fig = viz.plot_timeline(gt, dets, ["a", "b", "c"], top_k=3, tiou_thresh=0.5)
    ax_det = fig.axes[1]
    assert len(ax_det.patches) == 3  # top 3 by score, best on top
    colours = [p.get_facecolor() for p in ax_det.patches]
    expected = [("tab:green", 1.0), ("tab:orange", 0.9), ("tab:red", 0.4)]
    for got, (name, tiou) in zip(colours, expected, strict=True):
        assert got == pytest.approx(to_rgba(name, 0.35 + 0.65 * tiou))
    labels = [t.get_text() for t in ax_det.get_yticklabels()]
    assert labels == ["a  0.90  tIoU 1.00", "a  0.80  tIoU 0.90", "b  0.70  tIoU 0.40"]


# --------------------------------------------------------------------------------------
# PR curves and AP bars
def hand_case():
    def ann(vid, segs, labels):
        return VideoAnnotation(vid, "test", 50.0, 1.0, np.array(segs, float), np.array(labels))

    gt = {"A": ann("A", [[0, 10], [20, 30]], [0, 0]), "B": ann("B", [[0, 10]], [1])}
    dets = {
        "A": Detections(
            torch.tensor([[0.0, 10.0], [0.0, 9.0], [20.0, 30.0]]),
            torch.tensor([0.9, 0.8, 0.7]),
            torch.tensor([0, 0, 1]),
        ),
        "B": Detections(torch.tensor([[0.0, 6.0]]), torch.tensor([0.6]), torch.tensor([1])),
        "elsewhere": Detections(torch.tensor([[0.0, 5.0]]), torch.tensor([0.1]), torch.tensor([1])),
    }
    return gt, dets


def test_pr_curves_by_hand(tmp_path):
    gt, dets = hand_case()
    precision, recall, scores = viz.pr_curves(gt, dets, 2, [0.5, 0.7])
    # ranked 0.9 TP, 0.8 duplicate, 0.7 wrong video, 0.6 tIoU 0.6, 0.1 video outside the GT
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7, 0.6, 0.1])
    np.testing.assert_allclose(recall[0], [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(precision[0], [1, 1 / 2, 1 / 3, 2 / 4, 2 / 5])
    np.testing.assert_allclose(recall[1], [1 / 3] * 5)
    np.testing.assert_allclose(precision[1], [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])

    p1, r1, _ = viz.pr_curves(gt, dets, 2, [0.5], label=1)
    np.testing.assert_allclose(r1[0], [0, 1, 1])
    np.testing.assert_allclose(p1[0], [0, 1 / 2, 1 / 3])

    fig = viz.plot_pr_curves(precision, recall, [0.5, 0.7])
    lines = lines_by_gid(fig)
    assert sorted(lines) == ["tiou=0.5", "tiou=0.7"]
    assert lines["tiou=0.5"][0].get_xdata()[-1] == pytest.approx(2 / 3)
    assert lines["tiou=0.7"][0].get_xdata()[-1] == pytest.approx(1 / 3)
    assert_png(viz.figure_to_png(fig, tmp_path / "pr.png"))


def test_plot_pr_curves_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="thresholds"):
        viz.plot_pr_curves(np.zeros((2, 3)), np.zeros((2, 3)), [0.5])


def test_pr_curves_of_trained_model(trained, tmp_path):
    module, datamodule, batch = trained
    detections = module.eval_detector.detect(batch, module.postprocess_cfg)
    gt = {m.video_id: datamodule.annotations("val")[m.video_id] for m in batch.meta}
    precision, recall, scores = viz.pr_curves(
        gt, dict(zip(batch.video_ids, detections, strict=True)), 8, [0.3, 0.7]
    )
    # the protocol ignores predictions of classes without GT in the subset
    gt_classes = torch.from_numpy(np.concatenate([v.labels for v in gt.values()]))
    assert len(scores) == sum(int(torch.isin(d.labels, gt_classes).sum()) for d in detections)
    assert len(scores) > 0
    assert (np.diff(scores) <= 0).all() and (np.diff(recall, axis=1) >= 0).all()
    assert (recall[1] <= recall[0]).all() and recall.max() <= 1.0
    assert_png(
        viz.figure_to_png(viz.plot_pr_curves(precision, recall, [0.3, 0.7]), tmp_path / "p.png")
    )


def test_per_class_ap_bars_by_hand(tmp_path):
    ap = np.array([[0.5, np.nan, 0.2, 1.0], [0.3, np.nan, 0.0, 0.8]])
    fig = viz.plot_per_class_ap(torch.from_numpy(ap), ["a", "b", "c", "d"], [0.5, 0.7])
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_gid() == "ap"]
    assert [p.get_height() for p in bars] == pytest.approx([0.4, 0.1, 0.9])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "c", "d"]
    (mean_line,) = [line for line in ax.get_lines() if "mean" in line.get_label()]
    assert mean_line.get_ydata()[0] == pytest.approx((0.4 + 0.1 + 0.9) / 3)
    assert_png(viz.figure_to_png(fig, tmp_path / "ap.png"))
    with pytest.raises(ValueError, match="names"):
        viz.plot_per_class_ap(ap, ["a"], [0.5, 0.7])


def test_figure_to_array_size_and_content():
    fig = viz.plot_per_class_ap(np.array([0.5, 0.25]), ["a", "b"], [0.5])
    width, height = fig.get_size_inches()
    image = viz.figure_to_array(fig, dpi=50)
    assert image.dtype == np.uint8 and image.shape == (round(height * 50), round(width * 50), 3)
    assert image.min() < 100 and image.max() == 255  # dark bars / text on a white page


@pytest.mark.slow
def test_callback_logs_images_and_table_to_wandb(trained, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    module, datamodule, _ = trained
    logger = WandbLogger(project="asl-tal-test", save_dir=str(tmp_path), offline=True)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[visualization_callback(every_n_epochs=1)],
    )
    trainer.validate(module, datamodule=datamodule, verbose=False)
    logger.experiment.finish()
    images = {p.name.split("_")[0] for p in tmp_path.glob("wandb/*/files/media/images/viz/*.png")}
    assert images == {"sensitivity", "timeline", "pr", "per"}
    # the run folder has the same figures as PNG files
    files = {p.name.split("_")[0] for p in (tmp_path / "plots" / "epoch_000").glob("*.png")}
    assert files == images
    assert list(tmp_path.glob("wandb/*/files/media/table/viz/per_class_AP*.table.json"))


# --------------------------------------------------------------------------------------
# names from the data are plain text, a figure that cannot be drawn is counted
MATHTEXT = ["cls$_$0", "clip_$x^$", r"$\frac{a}$"]


def test_matplotlib_rejects_these_names_as_mathtext():
    """The names below would stop a plot if matplotlib parsed them."""
    for name in MATHTEXT:
        fig = Figure()
        fig.text(0.5, 0.5, name)
        with pytest.raises(ValueError):
            viz.figure_to_array(fig)


def test_mathtext_class_names_and_video_ids_are_drawn_as_written():
    gt = VideoAnnotation(
        "clip_$x^$",
        "val",
        100.0,
        1.0,
        np.array([[10.0, 20.0], [30.0, 40.0]]),
        np.array([0, 1]),
    )
    dets = Detections(
        torch.tensor([[10.0, 20.0], [30.0, 34.0]]), torch.tensor([0.9, 0.7]), torch.tensor([0, 2])
    )
    timeline = viz.plot_timeline(gt, dets, MATHTEXT)
    detections = viz.plot_detections("clip_$x^$", 100.0, dets, MATHTEXT)
    bars = viz.plot_per_class_ap(np.array([0.5, 0.2, 0.1]), MATHTEXT, [0.5])
    pr = viz.plot_pr_curves(np.ones((1, 2)), np.array([[0.5, 1.0]]), [0.5], MATHTEXT[0])
    for fig in (timeline, detections, bars, pr):
        assert viz.figure_to_array(fig).std() > 0  # drawn
    labels = [t.get_text() for t in timeline.axes[0].get_yticklabels()]
    assert labels == ["cls$_$0", "clip_$x^$"]
    assert timeline.axes[0].get_title() == "clip_$x^$: ground truth (2 segments)"
    assert [t.get_text() for t in detections.axes[0].get_legend().get_texts()] == [
        "cls$_$0",
        r"$\frac{a}$",
    ]
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == MATHTEXT
    assert pr.axes[0].get_title() == "precision–recall, cls$_$0"


def mathtext_copy(data_dir: Path, root: Path) -> Path:
    """The tiny synthetic set under ``root`` with every class renamed ``action_06`` ->
    ``cls$_$06`` and every validation video ``synth_validation_0024`` ->
    ``clip_$x^$_0024`` (its feature file too)."""
    source, target = data_dir / "synthetic_tiny", root / "synthetic_tiny"
    shutil.copytree(source, target)
    ann_path = target / "annotations.json"
    data = json.loads(ann_path.read_text())
    database = {}
    for video_id, entry in data["database"].items():
        for ann in entry["annotations"]:
            ann["label"] = ann["label"].replace("action_", "cls$_$")
        new_id = video_id.replace("synth_validation_", "clip_$x^$_")
        if new_id != video_id:
            (target / "features" / f"{video_id}.npy").rename(target / "features" / f"{new_id}.npy")
        database[new_id] = entry
    ann_path.write_text(json.dumps({**data, "database": database}))
    return root


def test_callback_draws_mathtext_class_names_and_video_ids(viz_run, trained, tmp_path, monkeypatch):
    data_dir, _ = viz_run
    module = trained[0]
    cfg = compose("train", tiny_overrides(mathtext_copy(data_dir, tmp_path / "data")))
    datamodule = build_datamodule(cfg, l3=module.detector.network.l3)
    datamodule.prepare_data()
    datamodule.setup("validate")
    names = list(datamodule.class_map.names)
    assert names[0] == "cls$_$00"
    monkeypatch.setattr(module, "class_names", names)
    callback = visualization_callback(every_n_epochs=1, num_instances=2, num_videos=2)
    trainer = validate_with(callback, (module, datamodule, None), tmp_path / "run")
    assert trainer.state.finished
    assert callback.failures == 0
    folder = tmp_path / "run" / "plots" / "epoch_000"
    timelines = sorted(p.name for p in folder.glob("timeline_*.png"))
    first, second = (m.video_id for m in next(iter(datamodule.val_dataloader())).meta[:2])
    assert "$" in first
    # the file names replace what is not a letter, digit, '-', '_' or '.'
    assert timelines == sorted(
        f"timeline_{v.replace('$', '_').replace('^', '_')}.png" for v in (first, second)
    )
    for path in folder.glob("*.png"):
        assert_png(path)


def test_a_figure_that_cannot_be_drawn_is_counted_and_the_others_written(
    trained, tmp_path, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise ValueError("cannot lay out")

    monkeypatch.setattr(viz, "plot_pr_curves", broken)
    callback = visualization_callback(every_n_epochs=1, num_instances=1, num_videos=1)
    with caplog.at_level("WARNING", logger="asl_tal.callbacks"):
        validate_with(callback, trained, tmp_path)
    assert callback.failures == 1
    assert "could not draw pr_curves (ValueError: cannot lay out)" in caplog.text
    names = {p.name for p in (tmp_path / "plots" / "epoch_000").iterdir()}
    assert "pr_curves.png" not in names and "per_class_ap.png" in names
