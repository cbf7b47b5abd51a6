"""The offline scorer end to end, on the hand-computed case of the metric tests."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from asl_tal.data.annotations import AnnotationError
from asl_tal.evaluate import main
from asl_tal.submission import SubmissionError


def gt_file(tmp_path: Path) -> Path:
    def video(subset, anns):
        return {
            "subset": subset,
            "duration": 100.0,
            "fps": 30.0,
            "annotations": [{"label": lab, "segment": seg} for lab, seg in anns],
        }

    database = {
        "v0": video("test", [("a", [0, 10]), ("a", [20, 30]), ("b", [0, 10])]),
        "v1": video("test", [("a", [0, 10]), ("d", [50, 60])]),
        "t0": video("training", [("c", [0, 10])]),  # class c exists, but has no test GT
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"version": "x", "database": database}))
    return path


def pred_file(tmp_path: Path, results: dict) -> Path:
    path = tmp_path / "pred.json"
    path.write_text(json.dumps({"version": "x", "results": results, "external_data": {}}))
    return path


def det(label, score, a, b):
    return {"label": label, "score": score, "segment": [a, b]}


# Same rows as tests/metrics/test_detection_map.py (AP by hand there):
# class a: 34/45 at 0.5, 7/15 at 0.7; class b: 1/2; class d: 0; class c and "zzz": ignored.
RESULTS = {
    "v0": [
        det("a", 0.9, 0, 10),
        det("a", 0.8, 0, 10),
        det("a", 0.5, 20, 28),
        det("b", 0.6, 0, 10),
        det("b", 0.6, 0, 4),
        det("c", 0.99, 0, 10),
        det("zzz", 0.99, 0, 10),
    ],
    "v1": [det("a", 0.7, 0, 5)],
    "v2": [det("a", 0.6, 0, 10)],  # not in the test subset: false positive
}


def test_cli_end_to_end(tmp_path: Path, capsys, caplog) -> None:
    out = tmp_path / "metrics" / "m.json"
    args = ["--gt", str(gt_file(tmp_path)), "--pred", str(pred_file(tmp_path, RESULTS))]
    with caplog.at_level(logging.WARNING):
        main([*args, "--subset", "test", "--tiou", "0.5", "0.7", "--out", str(out)])
    written = json.loads(out.read_text())
    expected = [(34 / 45 + 0.5) / 3, (7 / 15 + 0.5) / 3]
    assert written["tiou"] == [0.5, 0.7]
    assert written["mAP"] == pytest.approx(expected, abs=1e-12)
    assert written["average_mAP"] == pytest.approx(sum(expected) / 2, abs=1e-12)
    expected_ap = {"a": [34 / 45, 7 / 15], "b": [0.5, 0.5], "d": [0.0, 0.0]}
    assert set(written["per_class_AP"]) == set(expected_ap)
    for name, ap in expected_ap.items():
        assert written["per_class_AP"][name] == pytest.approx(ap, abs=1e-12)
    table = capsys.readouterr().out
    assert f"{expected[0] * 100:6.2f}" in table and "average" in table
    assert "1 predictions on 1 videos outside" in caplog.text
    assert "2 predictions with 2 labels that have no GT" in caplog.text


def test_module_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asl_tal.evaluate",
            "--gt",
            str(gt_file(tmp_path)),
            "--pred",
            str(pred_file(tmp_path, RESULTS)),
            "--subset",
            "TEST",
            "--tiou",
            "0.5",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{(34 / 45 + 0.5) / 3 * 100:6.2f}" in proc.stdout


def test_empty_predictions_give_zero(tmp_path: Path) -> None:
    metrics = main(
        ["--gt", str(gt_file(tmp_path)), "--pred", str(pred_file(tmp_path, {})), "--subset", "test"]
    )
    assert metrics["mAP"] == [0.0] * 5 and metrics["average_mAP"] == 0.0
    assert not any(math.isnan(x) for x in metrics["mAP"])


def test_empty_gt_subset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="subset"):
        main(
            [
                "--gt",
                str(gt_file(tmp_path)),
                "--pred",
                str(pred_file(tmp_path, RESULTS)),
                "--subset",
                "validation",
            ]
        )


@pytest.mark.parametrize(
    ("results", "message"),
    [
        (
            {"v1": [det("a", 0.5, 0, 1), det("a", 0.5, 9, 3)]},
            "'v1' entry 1: field 'segment' has end < start",
        ),
        ({"v0": [det("a", float("nan"), 0, 1)]}, "'v0' entry 0: field 'score' is not finite"),
        (
            {"v0": [det("a", 0.5, 0, 1), {"label": "a", "score": 0.5}]},
            "'v0' entry 1: missing field 'segment'",
        ),
        (
            {"v0": [{"label": "a", "score": "high", "segment": [0, 1]}]},
            "'v0' entry 0: field 'score' must be a number",
        ),
        ({"v0": {"label": "a"}}, "'v0': expected a list"),
    ],
)
def test_bad_predictions_are_named(tmp_path: Path, results: dict, message: str) -> None:
    with pytest.raises(SubmissionError, match=message):
        main(["--gt", str(gt_file(tmp_path)), "--pred", str(pred_file(tmp_path, results))])


def test_malformed_json_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SubmissionError, match=r"bad\.json: malformed JSON"):
        main(["--gt", str(gt_file(tmp_path)), "--pred", str(bad)])
