"""scripts/protocol.py: runs grouped by draw and seed, the verdict of the draws × seeds rule."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from helpers.runs import write_test_scores

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import protocol  # noqa: E402  (scripts/ is not a package)


def write_run(
    folder: Path, draw: str, seed: int, last: float | None, selected: float | None = None
) -> None:
    """A finished run as ``train`` leaves it: the composed config, and the test scores of the
    last epoch (and of a checkpoint selected on held-out videos, when given)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"seed: {seed}\ndataset:\n  root: {draw}\n")
    if last is not None:
        write_test_scores(folder / "results", last, selected)


def write_side(tmp_path: Path, name: str, scores: dict[str, list[float]]) -> str:
    """One side's runs, seeds 0, 1, ... per draw; returns the glob that matches them."""
    for draw, values in scores.items():
        for seed, value in enumerate(values):
            write_run(tmp_path / f"{name}_{draw}_s{seed}", draw, seed, value)
    return str(tmp_path / f"{name}_*")


def run(argv: list[str], capsys) -> tuple[int | str, str, str]:
    try:
        code = protocol.main(argv)
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_candidate_ahead_on_every_draw_is_adopted(tmp_path, capsys):
    candidate = write_side(
        tmp_path, "cand", {"a": [0.80, 0.82], "b": [0.90, 0.90], "c": [0.70, 0.72]}
    )
    reference = write_side(
        tmp_path, "ref", {"a": [0.79, 0.80], "b": [0.85, 0.87], "c": [0.70, 0.71]}
    )
    code, out, _ = run(["--candidate", candidate, "--reference", reference], capsys)
    assert code == 0
    assert "verdict: adopt" in out
    # draw a: 81.00 ± sqrt(2)·1 = 1.41 against 79.50 ± 0.71, lead +1.50 > 1.41: outside the spread
    assert (
        "| a | 81.00 ± 1.41 (0: 80.00, 1: 82.00) | 79.50 ± 0.71 (0: 79.00, 1: 80.00) | +1.50 | no |"
        in out
    )
    # draw c: 71.00 against 70.50, lead +0.50 within the candidate's sd 1.41
    assert "| c | 71.00 ± 1.41" in out and "| +0.50 | yes |" in out
    # mean of draws: (81 + 90 + 71) / 3 = 80.67 against (79.5 + 86 + 70.5) / 3 = 78.67
    assert "| mean of draws | 80.67 | 78.67 | +2.00 | |" in out


def test_behind_on_one_draw_keeps_the_default(tmp_path, capsys):
    candidate = write_side(
        tmp_path, "cand", {"a": [0.90, 0.92], "b": [0.90, 0.90], "c": [0.70, 0.70]}
    )
    reference = write_side(
        tmp_path, "ref", {"a": [0.80, 0.80], "b": [0.80, 0.80], "c": [0.71, 0.71]}
    )
    result_file = tmp_path / "verdict.json"
    code, out, _ = run(
        ["--candidate", candidate, "--reference", reference, "--json", str(result_file)], capsys
    )
    assert code == 0
    assert "verdict: keep" in out
    assert "- draw c: the candidate is behind by 1.00" in out
    result = json.loads(result_file.read_text())
    assert result["verdict"] == "keep"
    assert math.isclose(result["rows"][2]["lead"], -0.01)


def test_too_few_seeds_or_draws_leaves_it_undecided(tmp_path, capsys):
    candidate = write_side(tmp_path, "cand", {"a": [0.90, 0.92], "b": [0.90]})
    reference = write_side(tmp_path, "ref", {"a": [0.80, 0.80], "b": [0.80, 0.81], "c": [0.5, 0.5]})
    code, out, _ = run(["--candidate", candidate, "--reference", reference], capsys)
    assert code == 0
    assert "verdict: undecided" in out
    assert "- 2 draw(s) run by both sides, fewer than 3" in out
    assert "- draw b: the candidate has 1 seed(s), fewer than 2" in out
    assert "- draw c: only the reference ran it, left out" in out


def test_the_selected_score_is_read_from_held_out_selection_runs(tmp_path, capsys):
    for side, (last, selected) in {"cand": (0.70, 0.75), "ref": (0.72, 0.71)}.items():
        for draw in "abc":
            for seed in (0, 1):
                write_run(tmp_path / f"{side}_{draw}_{seed}", draw, seed, last, selected)
    argv = ["--candidate", str(tmp_path / "cand_*"), "--reference", str(tmp_path / "ref_*")]
    _, last_out, _ = run(argv, capsys)
    _, selected_out, _ = run([*argv, "--score", "selected"], capsys)
    assert "verdict: keep" in last_out and "| -2.00 |" in last_out
    assert "verdict: adopt" in selected_out and "| +4.00 |" in selected_out


def test_a_run_without_scores_stops_the_command_and_is_named(tmp_path, capsys):
    reference = write_side(tmp_path, "ref", {"a": [0.80]})
    write_run(tmp_path / "cand_unfinished", "a", 0, None)
    code, _, _ = run(["--candidate", str(tmp_path / "cand_*"), "--reference", reference], capsys)
    assert "cand_unfinished" in code and "no last test score" in code


def test_two_runs_of_one_draw_and_seed_are_refused(tmp_path, capsys):
    reference = write_side(tmp_path, "ref", {"a": [0.80]})
    write_run(tmp_path / "cand_one", "a", 0, 0.8)
    write_run(tmp_path / "cand_two", "a", 0, 0.9)
    code, _, _ = run(["--candidate", str(tmp_path / "cand_*"), "--reference", reference], capsys)
    assert "cand_two" in code and "a second run of draw 'a' with seed 0" in code


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--candidate", "nowhere_*", "--reference", "nowhere_*"], "no run folder matches"),
        (["--draw-key", "dataset.name"], "no config key 'dataset.name'"),
    ],
)
def test_bad_input_gets_a_one_line_error(tmp_path, capsys, argv, message):
    side = write_side(tmp_path, "run", {"a": [0.8]})
    code, _, _ = run(["--candidate", side, "--reference", side, *argv], capsys)
    assert message in code and "\n" not in code
