"""The offline scorer end to end, on the hand-computed case of the metric tests."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from helpers.commands import Result, run_command, run_process

from asl_tal.cli.score import EvaluationError, evaluate_results, main
from asl_tal.data.annotations import AnnotationError
from asl_tal.submission import SubmissionError, read_results


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
    # fractions, as the JSON and every other output: 0.4185 at tIoU 0.5
    assert f"0.50    {expected[0]:.4f}\n" in table
    assert f"average {sum(expected) / 2:.4f}" in table
    assert "1 predictions on 1 videos outside" in caplog.text
    assert "2 predictions with 2 labels that have no GT" in caplog.text


def test_module_entry_point(tmp_path: Path) -> None:
    # `python -m asl_tal.cli.score` (asl-evaluate) in a process of its own: the module entry
    proc = run_process(
        "evaluate",
        *("--gt", str(gt_file(tmp_path)), "--pred", str(pred_file(tmp_path, RESULTS))),
        *("--subset", "TEST", "--tiou", "0.5"),
    )
    assert f"0.50    {(34 / 45 + 0.5) / 3:.4f}\n" in proc.stdout


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


# --- Bad input on the command line: one "error: ..." line on stderr, exit status 2. ---


def run_cli(*args: str, cwd: Path) -> Result:
    """``asl-evaluate args...`` (in this process) in the folder ``cwd``."""
    return run_command("evaluate", *args, cwd=cwd, check=False)


def assert_one_line_error(proc: Result, *words: str) -> str:
    """Exit status 2, no traceback, stderr is one ``error: ...`` line holding ``words``.

    Bad input is found before any scoring, so nothing (no warning) comes before the line.
    """
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_tiou_outside_zero_one_is_refused(tmp_path: Path) -> None:
    gt, pred = gt_file(tmp_path), pred_file(tmp_path, RESULTS)
    proc = run_cli(
        "--gt", str(gt), "--pred", str(pred), "--tiou", "1.5", "-0.2", "0.5", cwd=tmp_path
    )
    line = assert_one_line_error(proc, "(0, 1]", "1.5", "-0.2")
    assert "0.5" not in line  # only the bad values are named
    assert proc.stdout == ""  # no table
    for bad in (["0"], ["nan"], ["inf"]):
        proc = run_cli("--gt", str(gt), "--pred", str(pred), "--tiou", *bad, cwd=tmp_path)
        assert_one_line_error(proc, "(0, 1]", bad[0])
    proc = run_cli("--gt", str(gt), "--pred", str(pred), "--tiou", "abc", cwd=tmp_path)
    assert_one_line_error(proc, "--tiou", "'abc'")
    with pytest.raises(EvaluationError, match=r"1\.5"):
        evaluate_results(gt, pred, "test", [0.5, 1.5])


def test_tiou_of_one_is_accepted(tmp_path: Path) -> None:
    # At tIoU 1 only exact copies of a GT match. Class a (3 GT): ranked 0.9 v0 [0,10] TP,
    # then 0.8 (GT taken), 0.7, 0.6 (v2), 0.5 FP: AP = 1/3. Class b (1 GT): the two 0.6
    # ties rank the later one, [0,4], first (FP), then [0,10] TP at precision 1/2: AP = 1/2.
    # Class d: 0. mAP = (1/3 + 1/2 + 0) / 3 = 5/18.
    gt, pred = gt_file(tmp_path), pred_file(tmp_path, RESULTS)
    metrics = main(["--gt", str(gt), "--pred", str(pred), "--subset", "test", "--tiou", "1"])
    assert metrics["mAP"] == pytest.approx([5 / 18], abs=1e-12)


def entries(*bad: dict) -> dict:
    """Video v1 with three good entries, then ``bad`` (entry 3 onwards)."""
    return {"v0": [det("a", 0.9, 0, 10)], "v1": [det("a", 0.5, 0, 5)] * 3 + list(bad)}


@pytest.mark.parametrize(
    ("entry", "field", "phrase"),
    [
        ({"label": "a", "score": "0.9", "segment": [0, 1]}, "'score'", "got '0.9'"),
        ({"label": "a", "score": True, "segment": [0, 1]}, "'score'", "got True"),
        ({"label": "a", "score": None, "segment": [0, 1]}, "'score'", "got None"),
        ({"label": "a", "score": 0.5, "segment": "12"}, "'segment'", "got '12'"),
        ({"label": "a", "score": 0.5, "segment": ["1", 2]}, "'segment'", "two numbers"),
        ({"label": "a", "score": 0.5, "segment": [0, False]}, "'segment'", "two numbers"),
        ({"label": "a", "score": 0.5, "segment": [1, 2, 3]}, "'segment'", "[start, end]"),
        ({"label": "a", "score": 0.5, "segment": [5, 4.5]}, "'segment'", "end < start"),
        ({"label": "a", "score": float("inf"), "segment": [0, 1]}, "'score'", "not finite"),
        ({"label": "a", "score": 0.5, "segment": [0, float("nan")]}, "'segment'", "not finite"),
        ({"label": 7, "score": 0.5, "segment": [0, 1]}, "'label'", "must be a string"),
        ({"score": 0.5, "segment": [0, 1]}, "'label'", "missing field"),
    ],
)
def test_bad_score_or_segment_is_one_line(
    tmp_path: Path, entry: dict, field: str, phrase: str
) -> None:
    pred = pred_file(tmp_path, entries(entry))
    proc = run_cli("--gt", str(gt_file(tmp_path)), "--pred", str(pred), cwd=tmp_path)
    assert_one_line_error(proc, "pred.json", "video 'v1' entry 3", f"field {field}", phrase)
    with pytest.raises(SubmissionError, match="'v1' entry 3"):
        read_results(pred)


def test_score_as_huge_integer_is_not_finite(tmp_path: Path) -> None:
    # 1e400 written as an integer: a real number, but too large for a float.
    pred = tmp_path / "huge.json"
    pred.write_text(
        '{"results": {"v0": [{"label": "a", "score": 1' + "0" * 400 + ', "segment": [0, 1]}]}}'
    )
    proc = run_cli("--gt", str(gt_file(tmp_path)), "--pred", str(pred), cwd=tmp_path)
    assert_one_line_error(proc, "huge.json", "video 'v0' entry 0", "'score'", "not finite")


def test_zero_length_and_integer_predictions_are_accepted(tmp_path: Path) -> None:
    # end == start is a valid (if useless) prediction; a trailing false positive of class
    # a at the lowest score changes no AP, so the result is the hand-computed one.
    results = {**RESULTS, "v1": [*RESULTS["v1"], det("a", 0, 3, 3)]}
    gt, pred = gt_file(tmp_path), pred_file(tmp_path, results)
    metrics = main(["--gt", str(gt), "--pred", str(pred), "--subset", "test", "--tiou", "0.5"])
    assert metrics["mAP"] == pytest.approx([(34 / 45 + 0.5) / 3], abs=1e-12)


def test_scores_read_match_the_file(tmp_path: Path) -> None:
    rows = read_results(pred_file(tmp_path, {"x": [det("a", 1, 2, 3), det("b", 0.25, 4, 6)]}))
    assert rows.video_ids.tolist() == ["x", "x"] and rows.entry_index.tolist() == [0, 1]
    assert rows.labels.tolist() == ["a", "b"]
    assert rows.scores.tolist() == [1.0, 0.25]
    assert rows.segments.tolist() == [[2.0, 3.0], [4.0, 6.0]]


@pytest.mark.parametrize("results", [{}, {"v0": [], "v1": []}])
def test_no_predictions_warns_and_writes_metrics(tmp_path: Path, results: dict) -> None:
    out = tmp_path / "metrics.json"
    proc = run_cli(
        "--gt", str(gt_file(tmp_path)), "--pred", str(pred_file(tmp_path, results)),
        "--subset", "test", "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "no predictions" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "pred.json" in warnings[0]
    assert json.loads(out.read_text())["mAP"] == [0.0] * 5


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda t: ["--pred", str(t / "nope.json")], ["nope.json", "results file not found"]),
        (lambda t: ["--gt", str(t / "nogt.json")], ["nogt.json", "annotation file not found"]),
        (lambda t: ["--pred", str(write(t, "p.json", "{oops"))], ["p.json", "malformed JSON"]),
        (lambda t: ["--gt", str(write(t, "g.json", "[1, 2"))], ["g.json", "malformed JSON"]),
        (
            lambda t: ["--pred", str(write(t, "p.json", b'{"results": {"\xff": []}}'))],
            ["p.json", "malformed JSON"],
        ),
        (lambda t: ["--pred", str(write(t, "p.json", "[1, 2]"))], ["p.json", "'results'", "list"]),
        (
            lambda t: ["--pred", str(write(t, "p.json", '{"results": [1]}'))],
            ["p.json", "'results' must be an object", "list"],
        ),
        (lambda t: ["--pred", str(write(t, "p.json", '{"version": 1}'))], ["p.json", "'results'"]),
        (
            lambda t: ["--pred", str(write(t, "p.json", '{"results": {"v0": 3}}'))],
            ["p.json", "'v0'", "expected a list"],
        ),
        (
            lambda t: ["--pred", str(write(t, "p.json", '{"results": {"v0": [3]}}'))],
            ["p.json", "'v0' entry 0", "expected an object"],
        ),
        (lambda t: ["--gt", str(write(t, "g.json", '{"db": {}}'))], ["g.json", "'database'"]),
        (
            lambda t: ["--gt", str(write(t, "g.json", '{"database": {"v0": [1]}}'))],
            ["g.json", "'v0'", "not an object"],
        ),
        (lambda t: ["--subset", "nosuchsubset"], ["gt.json", "'subset'", "nosuchsubset"]),
        (lambda t: ["--subset", "validation"], ["gt.json", "'subset'", "validation"]),
        (lambda t: ["--out", str(write(t, "f", "x") / "m.json")], ["m.json", "cannot create"]),
        (lambda t: ["--out", str(t)], ["--out is a directory"]),
        (lambda t: ["--tiou"], ["--tiou"]),
        (lambda t: ["--bogus"], ["--bogus"]),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, make, words: list[str]) -> None:
    args = {"--gt": str(gt_file(tmp_path)), "--pred": str(pred_file(tmp_path, RESULTS))}
    extra = make(tmp_path)
    if extra[0] in args:
        args[extra[0]] = extra[1]
        extra = extra[2:]
    argv = [x for pair in args.items() for x in pair] + extra
    assert_one_line_error(run_cli(*argv, cwd=tmp_path), *words)


def test_duplicate_key_in_predictions_is_refused(tmp_path: Path) -> None:
    pred = write(
        tmp_path,
        "dup.json",
        '{"results": {"v0": [{"label": "a", "score": 0.9, "segment": [0, 10]}],\n'
        '             "v0": [{"label": "a", "score": 0.1, "segment": [50, 60]}]}}',
    )
    proc = run_cli("--gt", str(gt_file(tmp_path)), "--pred", str(pred), cwd=tmp_path)
    assert_one_line_error(proc, "dup.json", "duplicate key 'v0'", "/results")
    pred = write(
        tmp_path, "dup2.json", '{"results": {"v0": [{"label": "a", "score": 0.9, "score": 0.1,'
        ' "segment": [0, 10]}]}}',
    )  # fmt: skip
    proc = run_cli("--gt", str(gt_file(tmp_path)), "--pred", str(pred), cwd=tmp_path)
    assert_one_line_error(proc, "dup2.json", "duplicate key 'score'", "/results/v0/0")


def test_duplicate_video_in_gt_is_refused(tmp_path: Path) -> None:
    video = '{"subset": "test", "duration": 100, "annotations": []}'
    gt = write(tmp_path, "dupgt.json", f'{{"database": {{"v7": {video}, "v7": {video}}}}}')
    proc = run_cli("--gt", str(gt), "--pred", str(pred_file(tmp_path, RESULTS)), cwd=tmp_path)
    assert_one_line_error(proc, "dupgt.json", "duplicate key 'v7'", "/database")


@pytest.mark.parametrize("which", ["--gt", "--pred"])
def test_very_deep_json_is_one_line(tmp_path: Path, which: str) -> None:
    deep = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    args = {"--gt": str(gt_file(tmp_path)), "--pred": str(pred_file(tmp_path, RESULTS))}
    args[which] = str(deep)
    proc = run_cli(*[x for pair in args.items() for x in pair], cwd=tmp_path)
    assert_one_line_error(proc, "deep.json", "nested too deeply")
