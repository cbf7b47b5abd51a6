"""Table c on any dataset: train each row × seed as one Hydra multirun, tabulate mean ± sd.

The rows are the ``ablation`` config group (``conf/ablation/``: baseline, inst, class, asl,
asl_ascl). One command launches ``python -m asl_tal.train -m ablation=<rows> seed=<seeds>``
with the overrides after ``--`` (dataset, model size, launcher...), then reads every job's
test scores and writes ``table_c.md`` and ``table_c.json`` into the sweep directory: the last
epoch's, and the checkpoint's selected on validation videos that are not test videos (give
``dataset.val_holdout=0.2`` where the validation subset is the test subset) -- never a
checkpoint picked on the test videos. A job that failed (no metrics file) is listed as failed,
never averaged in.

    python scripts/table_c.py --out outputs/table_c_gym --seeds 0 1 2 -- \\
        dataset=custom dataset.json_file=... logger=csv hydra/launcher=joblib

    python scripts/table_c.py --out outputs/table_c_gym --collect   # tabulate only

The sd is the sample standard deviation over seeds (n - 1); a row with one seed has none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROWS = ("baseline", "inst", "class", "asl", "asl_ascl")
LABELS = {
    "baseline": "baseline",
    "inst": "+Inst.",
    "class": "+Class.",
    "asl": "+ASL",
    "asl_ascl": "+ASL+ASCL",
}


def job_overrides(job_dir: Path) -> dict[str, str]:
    """``key=value`` overrides of one multirun job, from its ``.hydra/overrides.yaml``."""
    lines = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    return dict(line.split("=", 1) for line in lines if "=" in line)


def job_scores(results: Path, metric: str) -> dict[str, float | None] | None:
    """``{"last": ..., "selected": ...}`` test scores of one job (None where the job did not
    report one), or None when the job wrote no metrics (failed).

    ``selected`` is the test score of the checkpoint selected on validation videos that are
    not test videos; ``last`` the last epoch's (``test_last_metrics.json`` beside a selected
    checkpoint, else ``test_metrics.json`` when the run tested the last epoch itself).
    """
    main_file = results / "test_metrics.json"
    if not main_file.is_file():
        return None
    tested = json.loads(main_file.read_text())
    last_file = results / "test_last_metrics.json"
    if tested.get("weights") == "best":
        last = json.loads(last_file.read_text())[metric] if last_file.is_file() else None
        return {"last": last, "selected": float(tested[metric])}
    return {"last": float(tested[metric]), "selected": None}


def summary(values: list[float | None]) -> dict:
    """Mean and sample sd (n - 1) of the values that are not None."""
    present = [v for v in values if v is not None]
    return {
        "values": values,
        "mean": statistics.fmean(present) if present else None,
        "sd": statistics.stdev(present) if len(present) > 1 else None,
    }


def collect(sweep_dir: Path, metric: str = "average_mAP") -> dict:
    """Per row: seeds, the last-epoch and the selected test scores (values, mean, sd) and
    failed seeds, from the sweep's job folders."""
    jobs: dict[str, dict] = {}
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        overrides = job_overrides(job_dir)
        row = overrides.get("ablation", "as configured")
        entry = jobs.setdefault(row, {"scores": {}, "failed_seeds": []})
        seed = int(overrides.get("seed", 0))
        scores = job_scores(job_dir / "results", metric)
        if scores is None:
            entry["failed_seeds"].append(seed)
        else:
            entry["scores"][seed] = scores
    rows = {}
    for row, entry in jobs.items():
        seeds = sorted(entry["scores"])
        rows[row] = {
            "seeds": seeds,
            **{
                kind: summary([entry["scores"][s][kind] for s in seeds])
                for kind in ("last", "selected")
            },
            "failed_seeds": sorted(entry["failed_seeds"]),
        }
    ordered = [r for r in ROWS if r in rows] + sorted(set(rows) - set(ROWS))
    return {"metric": metric, "rows": {r: rows[r] for r in ordered}}


def cells(seeds: list[int], scores: dict) -> tuple[str, str]:
    """``("mean ± sd", "seed: value, ...")`` in percent; a dash where nothing was reported."""
    if scores["mean"] is None:
        return "—", "—"
    sd = "" if scores["sd"] is None else f" ± {100 * scores['sd']:.2f}"
    per_seed = ", ".join(
        f"{s}: {100 * v:.2f}" for s, v in zip(seeds, scores["values"], strict=True) if v is not None
    )
    return f"{100 * scores['mean']:.2f}{sd}", per_seed


def markdown(table: dict) -> str:
    """The table as markdown, in percent: per row the last epoch's and the selected
    checkpoint's test score, mean ± sd and each seed."""
    lines = [
        f"| row | last epoch ({table['metric']}, %) | per seed "
        "| selected on held-out videos (%) | per seed | failed seeds |",
        "|---|---|---|---|---|---|",
    ]
    for row, entry in table["rows"].items():
        last, last_seeds = cells(entry["seeds"], entry["last"])
        selected, selected_seeds = cells(entry["seeds"], entry["selected"])
        failed = ", ".join(str(s) for s in entry["failed_seeds"]) or "—"
        lines.append(
            f"| {LABELS.get(row, row)} | {last} | {last_seeds} | {selected} | {selected_seeds} "
            f"| {failed} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the sweep directory")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--collect", action="store_true", help="tabulate an existing sweep")
    parser.add_argument("--metric", default="average_mAP", help="key of test_metrics.json")
    args = parser.parse_args(own)
    if not args.collect:
        command = [
            sys.executable,
            "-m",
            "asl_tal.train",
            "-m",
            f"ablation={','.join(args.rows)}",
            f"seed={','.join(str(s) for s in args.seeds)}",
            f"hydra.sweep.dir={args.out}",
            *overrides,
        ]
        print("running:", " ".join(command), file=sys.stderr, flush=True)
        # a failed job is tabulated as failed; the sweep's own exit status is reported
        status = subprocess.run(command).returncode
        if status:
            print(f"the sweep exited with status {status}", file=sys.stderr)
    table = collect(args.out, args.metric)
    (args.out / "table_c.json").write_text(json.dumps(table, indent=2))
    (args.out / "table_c.md").write_text(markdown(table))
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
