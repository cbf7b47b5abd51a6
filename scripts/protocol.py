"""Decide a default under the draws × seeds protocol (docs/results.md): candidate against reference.

Reads finished run folders (what ``python -m asl_tal.train`` leaves: ``.hydra/config.yaml``
and ``results/test_metrics.json``), groups them by draw (the runs' ``dataset.root`` unless
``--draw-key`` names other config keys) and by ``seed``, and prints per draw each side's
test score, mean ± sd over seeds, and the difference of the means. The verdict is **keep**
when the candidate's mean is behind on some draw, **undecided** when there are fewer than
``--min-draws`` draws or fewer than ``--min-seeds`` seeds of a side on some draw, and
**adopt** otherwise; a lead within that draw's larger seed sd is marked as inside the spread.

    python scripts/protocol.py --candidate 'runs/d*_window_s*' --reference 'runs/d*_def_s*'
    python scripts/protocol.py --candidate ... --reference ... --score selected

``--score last`` (the default) reads the last epoch's test score, ``selected`` the score of
the checkpoint selected on held-out training videos (runs with ``dataset.val_holdout``).
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf
from table_c import job_scores


def run_key(run_dir: Path, keys: list[str]) -> tuple[str, int]:
    """``(draw, seed)`` of one run folder, from its ``.hydra/config.yaml``."""
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise SystemExit(f"{run_dir}: no .hydra/config.yaml, not a train run folder")
    config = OmegaConf.load(config_file)
    draw = []
    for key in keys:
        value = OmegaConf.select(config, key, default=None)
        if value is None:
            raise SystemExit(f"{config_file}: no config key {key!r} to tell the draw by")
        draw.append(str(value))
    return " ".join(draw), int(config.seed)


def side_scores(
    pattern: str, keys: list[str], score: str, metric: str
) -> dict[str, dict[int, float]]:
    """``{draw: {seed: test score}}`` of the run folders matching the glob ``pattern``.

    A run without the score (failed, or no held-out selection for ``selected``) stops the
    command with its folder named; two runs with one draw and seed do too.
    """
    run_dirs = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_dir())
    if not run_dirs:
        raise SystemExit(f"no run folder matches {pattern!r}")
    scores: dict[str, dict[int, float]] = {}
    for run_dir in run_dirs:
        draw, seed = run_key(run_dir, keys)
        found = job_scores(run_dir / "results", metric)
        value = None if found is None else found[score]
        if value is None:
            raise SystemExit(f"{run_dir}: no {score} test score (results/test_metrics.json)")
        seeds = scores.setdefault(draw, {})
        if seed in seeds:
            raise SystemExit(f"{run_dir}: a second run of draw {draw!r} with seed {seed}")
        seeds[seed] = value
    return scores


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample sd (n - 1; None for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def compare(
    candidate: dict[str, dict[int, float]],
    reference: dict[str, dict[int, float]],
    min_draws: int,
    min_seeds: int,
) -> dict:
    """Per draw (those both sides ran) the two sides' scores and the difference of means, and
    the verdict with its reasons."""
    draws = sorted(set(candidate) & set(reference))
    rows = []
    for draw in draws:
        cand_mean, cand_sd = mean_sd(list(candidate[draw].values()))
        ref_mean, ref_sd = mean_sd(list(reference[draw].values()))
        spread = max((sd for sd in (cand_sd, ref_sd) if sd is not None), default=None)
        lead = cand_mean - ref_mean
        rows.append(
            {
                "draw": draw,
                "candidate": {"per_seed": candidate[draw], "mean": cand_mean, "sd": cand_sd},
                "reference": {"per_seed": reference[draw], "mean": ref_mean, "sd": ref_sd},
                "lead": lead,
                "inside_spread": spread is None or abs(lead) <= spread,
            }
        )
    missing = []
    if len(draws) < min_draws:
        missing.append(f"{len(draws)} draw(s) run by both sides, fewer than {min_draws}")
    for row in rows:
        for side in ("candidate", "reference"):
            if len(row[side]["per_seed"]) < min_seeds:
                missing.append(
                    f"draw {row['draw']}: the {side} has {len(row[side]['per_seed'])} seed(s), "
                    f"fewer than {min_seeds}"
                )
    behind = [
        f"draw {row['draw']}: the candidate is behind by {-100 * row['lead']:.2f}"
        for row in rows
        if row["lead"] <= 0
    ]
    left_out = [
        f"draw {draw}: only the {name} ran it, left out"
        for name, side in (("candidate", candidate), ("reference", reference))
        for draw in sorted(set(side) - set(draws))
    ]
    verdict = "keep" if behind else "undecided" if missing else "adopt"
    return {
        "rows": rows,
        "mean_of_draws": {
            side: statistics.fmean(row[side]["mean"] for row in rows) if rows else None
            for side in ("candidate", "reference")
        },
        "verdict": verdict,
        "reasons": behind + missing + left_out,
    }


def cell(side: dict) -> str:
    """``mean ± sd (seed: value, ...)`` in percent."""
    sd = "" if side["sd"] is None else f" ± {100 * side['sd']:.2f}"
    per_seed = ", ".join(f"{s}: {100 * v:.2f}" for s, v in sorted(side["per_seed"].items()))
    return f"{100 * side['mean']:.2f}{sd} ({per_seed})"


def markdown(result: dict, score: str) -> str:
    """The comparison as a markdown table in percent, then the verdict and its reasons."""
    lines = [
        f"| draw | candidate, {score} (%) | reference (%) | lead | inside a seed sd |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['draw']} | {cell(row['candidate'])} | {cell(row['reference'])} "
            f"| {100 * row['lead']:+.2f} | {'yes' if row['inside_spread'] else 'no'} |"
        )
    means = result["mean_of_draws"]
    if result["rows"]:
        lines.append(
            f"| mean of draws | {100 * means['candidate']:.2f} | {100 * means['reference']:.2f} "
            f"| {100 * (means['candidate'] - means['reference']):+.2f} | |"
        )
    lines.append("")
    lines.append(f"verdict: {result['verdict']}")
    lines.extend(f"- {reason}" for reason in result["reasons"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, help="glob of the candidate's run folders")
    parser.add_argument("--reference", required=True, help="glob of the reference's run folders")
    parser.add_argument("--score", choices=("last", "selected"), default="last")
    parser.add_argument("--metric", default="average_mAP", help="key of test_metrics.json")
    parser.add_argument(
        "--draw-key", nargs="+", default=["dataset.root"], help="config keys that tell draws apart"
    )
    parser.add_argument("--min-draws", type=int, default=3)
    parser.add_argument("--min-seeds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sides = {
        name: side_scores(pattern, args.draw_key, args.score, args.metric)
        for name, pattern in (("candidate", args.candidate), ("reference", args.reference))
    }
    result = compare(sides["candidate"], sides["reference"], args.min_draws, args.min_seeds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result, args.score), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
