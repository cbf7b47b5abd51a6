"""Results writers and the reader: layouts and round trips."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from asl_tal.config_blocks import ConfigValueError
from asl_tal.data.annotations import ClassMap
from asl_tal.postprocess.decode import Detections
from asl_tal.submission import (
    read_results,
    top_k_per_class,
    write_activitynet_results,
    write_results,
)

CLASSES = ClassMap(("jump", "run", "swim"))
DETS = {
    "vid_a": Detections(
        torch.tensor([[1.0, 2.5], [0.0, 4.0]], dtype=torch.float64),
        torch.tensor([0.9, 0.25]),
        torch.tensor([2, 0]),
    ),
    "vid_b": Detections(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int64)),
}


def test_activitynet_layout_and_round_trip(tmp_path: Path) -> None:
    path = write_activitynet_results(tmp_path / "out" / "results.json", DETS, CLASSES)
    data = json.loads(path.read_text())
    assert set(data) == {"version", "results", "external_data"}
    assert data["results"]["vid_a"][0] == {
        "label": "swim",
        "score": 0.8999999761581421,
        "segment": [1.0, 2.5],
    }
    assert data["results"]["vid_b"] == []
    rows = read_results(path)
    assert rows.video_ids.tolist() == ["vid_a", "vid_a"]
    assert rows.labels.tolist() == ["swim", "jump"]
    np.testing.assert_allclose(rows.scores, [0.9, 0.25], rtol=1e-7)
    np.testing.assert_array_equal(rows.segments, [[1.0, 2.5], [0.0, 4.0]])
    assert rows.entry_index.tolist() == [0, 1]


def test_an_ego4d_submission_reads_its_detect_results(tmp_path: Path) -> None:
    path = tmp_path / "sub.json"
    entry = {"label": "swim", "score": 0.5, "segment": [1.0, 3.0]}
    submission = {"version": "1.0", "challenge": "ego4d_moment_queries", "retrieve_results": {}}
    path.write_text(json.dumps({**submission, "detect_results": {"clip": [entry]}}))
    rows = read_results(path)
    assert rows.video_ids.tolist() == ["clip"] and rows.labels.tolist() == ["swim"]
    np.testing.assert_array_equal(rows.segments, [[1.0, 3.0]])


# --------------------------------------------------------------------------------------
# Ego4D Moment Queries submission: {"version": "1.0", "challenge": "ego4d_moment_queries",
# "detect_results": {clip: [entry]}, "retrieve_results": {clip: [entry]}}, entries
# {"label": str, "score": number, "segment": [start, end]}; the challenge's retrieval
# scorer groups a clip's entries by label and reads each class's list in file order.
def clip_detections() -> dict[str, Detections]:
    """Clip ``c1``: scores deliberately out of order; classes 0 (jump) x3, 1 (run) x2,
    2 (swim) x1. Clip ``c2``: none."""
    segments = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]
    return {
        "c1": Detections(
            torch.tensor(segments, dtype=torch.float64),
            torch.tensor([0.2, 0.9, 0.5, 0.7, 0.4, 0.8]),
            torch.tensor([0, 0, 1, 0, 1, 2]),
        ),
        "c2": Detections(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int64)),
    }


def entry(label: str, segment: list[float], score: float) -> dict:
    return {"label": label, "score": pytest.approx(score), "segment": segment}


def test_ego4d_submission_schema_by_hand(tmp_path: Path) -> None:
    path = write_results(tmp_path / "sub.json", clip_detections(), CLASSES, "ego4d", 2)
    data = json.loads(path.read_text())
    assert set(data) == {"version", "challenge", "detect_results", "retrieve_results"}
    assert data["version"] == "1.0" and data["challenge"] == "ego4d_moment_queries"
    assert set(data["detect_results"]) == set(data["retrieve_results"]) == {"c1", "c2"}
    # detection: every detection, by descending score
    assert data["detect_results"]["c1"] == [
        entry("jump", [1.0, 2.0], 0.9),
        entry("swim", [5.0, 6.0], 0.8),
        entry("jump", [3.0, 4.0], 0.7),
        entry("run", [2.0, 3.0], 0.5),
        entry("run", [4.0, 5.0], 0.4),
        entry("jump", [0.0, 1.0], 0.2),
    ]
    # retrieval, top 2 per class: jump loses its 0.2, run and swim keep all theirs
    assert data["retrieve_results"]["c1"] == [
        entry("jump", [1.0, 2.0], 0.9),
        entry("swim", [5.0, 6.0], 0.8),
        entry("jump", [3.0, 4.0], 0.7),
        entry("run", [2.0, 3.0], 0.5),
        entry("run", [4.0, 5.0], 0.4),
    ]
    assert data["detect_results"]["c2"] == data["retrieve_results"]["c2"] == []
    for rows in (*data["detect_results"].values(), *data["retrieve_results"].values()):
        for row in rows:
            assert type(row["label"]) is str and type(row["score"]) is float
            assert [type(x) for x in row["segment"]] == [float, float]
    rows = read_results(path)  # our reader takes the detect_results
    assert rows.video_ids.tolist() == ["c1"] * 6


def test_retrieval_keeps_the_k_best_of_each_class() -> None:
    kept = top_k_per_class(clip_detections()["c1"], 1)
    assert kept.labels.tolist() == [0, 2, 1]
    np.testing.assert_allclose(kept.scores, [0.9, 0.8, 0.5])
    everything = top_k_per_class(clip_detections()["c1"], 10)
    np.testing.assert_allclose(everything.scores, [0.9, 0.8, 0.7, 0.5, 0.4, 0.2])


@pytest.mark.parametrize(
    ("output_format", "top_k", "message"),
    [
        ("ego4D", 5, "output_format must be one of activitynet, ego4d, actionformer, got 'ego4D'"),
        ("ego4d", 0, "retrieval_top_k must be a positive integer, got 0"),
        ("ego4d", 2.5, "retrieval_top_k must be a positive integer, got 2.5"),
    ],
)
def test_bad_output_settings_are_one_line_errors(tmp_path, output_format, top_k, message):
    with pytest.raises(ConfigValueError, match=f"^{re.escape(message)}$"):
        write_results(tmp_path / "x.json", DETS, CLASSES, output_format, top_k)
    assert not (tmp_path / "x.json").exists()


# --------------------------------------------------------------------------------------
# ActionFormer's eval_results.pkl: a dict of parallel arrays, one row per detection
def test_actionformer_pickle_layout_by_hand(tmp_path: Path) -> None:
    dets = {
        **DETS,
        "vid_c": Detections(torch.tensor([[5.0, 6.0]]), torch.tensor([0.5]), torch.tensor([1])),
    }
    path = write_results(tmp_path / "eval_results.pkl", dets, CLASSES, "actionformer", 50)
    with path.open("rb") as f:
        data = pickle.load(f)  # our own file, written just above
    assert list(data) == ["video-id", "t-start", "t-end", "label", "score"]
    assert data["video-id"] == ["vid_a", "vid_a", "vid_c"]
    np.testing.assert_array_equal(data["t-start"], [1.0, 0.0, 5.0])
    np.testing.assert_array_equal(data["t-end"], [2.5, 4.0, 6.0])
    assert data["label"].dtype == np.int64 and data["label"].tolist() == [2, 0, 1]
    np.testing.assert_allclose(data["score"], [0.9, 0.25, 0.5], rtol=1e-7)
