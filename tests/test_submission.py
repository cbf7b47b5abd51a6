"""Results writers and the reader: layouts and round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from asl_tal.data.annotations import ClassMap
from asl_tal.postprocess.decode import Detections
from asl_tal.submission import (
    read_results,
    write_activitynet_results,
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
