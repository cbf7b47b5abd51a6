"""What predict and eval write besides the ActivityNet JSON: an Ego4D Moment Queries
submission, ActionFormer's ``eval_results.pkl``, timeline plots without ground truth."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from asl_tal.conf import compose
from helpers.commands import run_command
from helpers.runs import read_json, tiny
from matplotlib.colors import to_rgba

from asl_tal.cli.predict import check_output, is_predict_output, predict
from asl_tal.data.annotations import ClassMap
from asl_tal.outputs import OutputError
from asl_tal.postprocess.decode import Detections
from asl_tal.submission import write_results
from asl_tal.viz import plot_detections, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASS_NAMES = [f"action_{i:02d}" for i in range(8)]  # the tiny synthetic set's classes
SUBMISSION_KEYS = {"version", "challenge", "detect_results", "retrieve_results"}
VIDEOS = {"clip_a": 90, "clip_b": 150}  # id -> feature steps (= seconds at stride 1, fps 1)


@pytest.fixture(scope="module")
def feature_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("feats")
    rng = np.random.default_rng(0)
    for name, length in VIDEOS.items():
        np.save(folder / f"{name}.npy", rng.normal(size=(length, 64)).astype(np.float32))
    return folder


def run_predict(trained_run: Path, feats: Path, run_dir: Path, *extra: str):
    return run_command(
        "predict",
        "debug=tiny",
        f"hydra.run.dir={run_dir}",
        f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
        f"input={feats}",
        *extra,
    )


def as_tuple(row: dict) -> tuple:
    return (row["label"], row["score"], *row["segment"])


def expected_retrieval(detections: list[dict], k: int) -> list[tuple]:
    """Per class the ``k`` best of ``detections`` (already by descending score), in order."""
    taken: dict[str, int] = {}
    kept = []
    for row in detections:
        if taken.get(row["label"], 0) < k:
            taken[row["label"]] = taken.get(row["label"], 0) + 1
            kept.append(as_tuple(row))
    return kept


def assert_submission(data: dict, clips: set[str], k: int) -> None:
    """The challenge's layout: keys, clip ids, entry types, ranking, top-k per class."""
    assert set(data) == SUBMISSION_KEYS
    assert data["version"] == "1.0" and data["challenge"] == "ego4d_moment_queries"
    assert set(data["detect_results"]) == set(data["retrieve_results"]) == clips
    for clip in clips:
        detected, retrieved = data["detect_results"][clip], data["retrieve_results"][clip]
        for row in detected + retrieved:
            assert set(row) == {"label", "score", "segment"}
            assert row["label"] in CLASS_NAMES and isinstance(row["score"], float)
            start, end = row["segment"]
            assert isinstance(start, float) and 0.0 <= start <= end
        scores = [row["score"] for row in detected]
        assert scores == sorted(scores, reverse=True)
        assert [as_tuple(r) for r in retrieved] == expected_retrieval(detected, k)
        per_class = [sum(r["label"] == c for r in retrieved) for c in CLASS_NAMES]
        assert max(per_class, default=0) <= k


@pytest.fixture(scope="module")
def ego4d_run(trained_run, feature_folder, tmp_path_factory) -> Path:
    """The run directory of ``predict output_format=ego4d retrieval_top_k=2 plot=true``."""
    run_dir = tmp_path_factory.mktemp("ego4d_predict")
    run_predict(
        trained_run,
        feature_folder,
        run_dir,
        "output_format=ego4d",
        "retrieval_top_k=2",
        "plot=true",
        "plot_top_k=5",
    )
    return run_dir


def test_predict_writes_an_ego4d_submission_and_timeline_plots(ego4d_run):
    data = read_json(ego4d_run / "results" / "ego4d_submission.json")
    assert_submission(data, set(VIDEOS), k=2)
    for clip, length in VIDEOS.items():
        assert data["detect_results"][clip], f"no detection for {clip}"
        assert max(row["segment"][1] for row in data["detect_results"][clip]) <= length
        png = ego4d_run / "plots" / f"{clip}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, png
    assert sorted(p.name for p in (ego4d_run / "plots").iterdir()) == ["clip_a.png", "clip_b.png"]


def test_predict_writes_actionformer_results_and_survives_unwritable_plots(
    trained_run, feature_folder, ego4d_run, tmp_path
):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the plot folder should be")
    run_dir = tmp_path / "run"
    proc = run_predict(
        trained_run,
        feature_folder,
        run_dir,
        "output_format=actionformer",
        "plot=true",
        f"plot_dir={blocker}",
    )
    assert "2 plots could not be written" in proc.stderr
    with (run_dir / "results" / "eval_results.pkl").open("rb") as f:
        data = pickle.load(f)  # written by the run above
    assert list(data) == ["video-id", "t-start", "t-end", "label", "score"]
    count = len(data["video-id"])
    assert count > 0 and set(data["video-id"]) == set(VIDEOS)
    assert all(len(data[key]) == count for key in ("t-start", "t-end", "label", "score"))
    assert data["label"].dtype == np.int64
    assert 0 <= data["label"].min() and data["label"].max() < len(CLASS_NAMES)
    assert np.all(data["t-start"] <= data["t-end"]) and np.all(data["score"] > 0)
    # same model, same features: the Ego4D run's detections, row for row (ids -> names)
    detected = read_json(ego4d_run / "results" / "ego4d_submission.json")["detect_results"]
    rows = [
        (video, CLASS_NAMES[label], start, end)
        for video, label, start, end in zip(
            data["video-id"], data["label"], data["t-start"], data["t-end"], strict=True
        )
    ]
    assert rows == [
        (video, row["label"], *row["segment"]) for video, dets in detected.items() for row in dets
    ]


def test_eval_writes_an_ego4d_submission_of_its_test_detections(trained_run, data_dir, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    overrides = (f"ckpt_path={ckpt}", "output_format=ego4d", "retrieval_top_k=1")
    run_command("eval", *tiny(data_dir, tmp_path, *overrides))
    data = read_json(tmp_path / "results" / "test_ego4d_submission.json")
    anet = read_json(tmp_path / "results" / "test_detections.json")["results"]
    assert_submission(data, set(anet), k=1)
    for clip, rows in anet.items():
        ranked = sorted(rows, key=lambda row: -row["score"])
        assert [as_tuple(r) for r in data["detect_results"][clip]] == [as_tuple(r) for r in ranked]


def test_timeline_without_ground_truth_by_hand():
    dets = Detections(
        segments=torch.tensor([[50.0, 60.0], [11.0, 20.0], [30.0, 34.0], [10.0, 20.0]]),
        scores=torch.tensor([0.6, 0.8, 0.7, 1.0]),
        labels=torch.tensor([2, 0, 1, 0]),
    )
    fig = plot_detections("v", 100.0, dets, ["a", "b", "c"], top_k=3)
    (ax,) = fig.axes
    bars = [p for p in ax.patches if p.get_gid() == "detection"]
    assert len(bars) == len(ax.patches) == 3  # the top 3 by score, best on top
    assert [(p.get_x(), p.get_x() + p.get_width()) for p in bars] == [
        (10.0, 20.0),
        (11.0, 20.0),
        (30.0, 34.0),
    ]
    # colour by class (tab10: a = C0, b = C1), opacity 0.35 + 0.65 * score
    expected = [("C0", 1.0), ("C0", 0.8), ("C1", 0.7)]
    for bar, (colour, score) in zip(bars, expected, strict=True):
        assert bar.get_facecolor() == pytest.approx(to_rgba(colour, 0.35 + 0.65 * score))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a  1.00", "a  0.80", "b  0.70"]
    assert ax.get_xlim() == (0.0, 100.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]

    empty = Detections(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    (ax,) = plot_detections("w", 5.0, empty, ["a"]).axes
    assert not ax.patches and "no detections" in [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("output_format", ["activitynet", "ego4d", "actionformer"])
def test_predict_overwrites_its_own_layouts_only(tmp_path, output_format):
    dets = {"v": Detections(torch.tensor([[1.0, 2.0]]), torch.tensor([0.5]), torch.tensor([0]))}
    ours = write_results(tmp_path / "ours", dets, ClassMap(("a",)), output_format, 50)
    assert is_predict_output(ours)
    check_output(ours, [])  # a rerun may replace it
    torch.save({"video-id": 1, "t-start": 2}, tmp_path / "weights.pt")
    np.save(tmp_path / "feats.npy", np.zeros((3, 2)))
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"video-id": [], "label": []}))
    for other in ("weights.pt", "feats.npy", "other.pkl"):
        assert not is_predict_output(tmp_path / other)
        with pytest.raises(OutputError, match="is not a predict results file"):
            check_output(tmp_path / other, [])


def test_predict_plots_a_video_whose_id_holds_mathtext(trained_run, tmp_path, monkeypatch):
    """``clip_$x^$`` would stop matplotlib's mathtext parser; the plot is drawn as written."""
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "clip_$x^$.npy", np.random.default_rng(0).normal(size=(90, 64)), False)
    monkeypatch.chdir(tmp_path)
    cfg = compose(
        "predict",
        [
            "debug=tiny",
            "trainer.accelerator=cpu",
            f"paths.output_dir={tmp_path}",
            f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
            f"input={feats}",
            "plot=true",
        ],
    )
    report = predict(cfg)
    assert report.plot_failures == []
    assert report.plots == [tmp_path / "plots" / "clip__x__.png"]
    assert report.plots[0].read_bytes()[:8] == PNG_MAGIC


def test_plots_draw_mathtext_class_names_and_count_a_plot_they_cannot_draw(tmp_path):
    dets = Detections(torch.tensor([[1.0, 4.0]]), torch.tensor([0.9]), torch.tensor([1]))
    names = ["cls$_$0", "clip_$x^$"]
    written, failures = write_plots(
        tmp_path, ["v"], lambda video_id: plot_detections(video_id, 10.0, dets, names, 5)
    )
    assert written == [tmp_path / "v.png"] and failures == []

    def broken(video_id):
        raise ValueError("cannot lay out")

    written, failures = write_plots(tmp_path, ["v", "w"], broken)
    assert written == []
    assert failures == [
        (str(tmp_path / "v.png"), "ValueError: cannot lay out"),
        (str(tmp_path / "w.png"), "ValueError: cannot lay out"),
    ]
