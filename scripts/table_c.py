"""Table c on any dataset: train each row × seed as one Hydra multirun, tabulate mean ± sd.

The rows are the ``ablation`` config group (``conf/ablation/``: baseline, inst, class, asl,
asl_ascl). One command launches ``python -m asl_tal.train -m ablation=<rows> seed=<seeds>``
with the overrides after ``--`` (dataset, model size, launcher...), then reads every job's
``results/test_metrics.json`` and writes ``table_c.md`` and ``table_c.json`` into the sweep
directory. A job that failed (no metrics file) is listed as failed, never averaged in.

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


def collect(sweep_dir: Path, metric: str = "average_mAP") -> dict:
    """Per row: seeds, values, mean, sd and failed seeds, from the sweep's job folders."""
    rows: dict[str, dict] = {}
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        overrides = job_overrides(job_dir)
        row = overrides.get("ablation", "as configured")
        entry = rows.setdefault(row, {"seeds": [], "values": [], "failed_seeds": []})
        seed = int(overrides.get("seed", 0))
        metrics_file = job_dir / "results" / "test_metrics.json"
        if metrics_file.is_file():
            entry["seeds"].append(seed)
            entry["values"].append(float(json.loads(metrics_file.read_text())[metric]))
        else:
            entry["failed_seeds"].append(seed)
    for entry in rows.values():
        order = sorted(range(len(entry["seeds"])), key=entry["seeds"].__getitem__)
        entry["seeds"] = [entry["seeds"][i] for i in order]
        entry["values"] = [entry["values"][i] for i in order]
        values = entry["values"]
        entry["mean"] = statistics.fmean(values) if values else None
        entry["sd"] = statistics.stdev(values) if len(values) > 1 else None
    ordered = [r for r in ROWS if r in rows] + sorted(set(rows) - set(ROWS))
    return {"metric": metric, "rows": {r: rows[r] for r in ordered}}


def markdown(table: dict) -> str:
    """The table as markdown, in percent: one line per row with mean ± sd and each seed."""
    lines = [
        f"| row | mean ± sd ({table['metric']}, %) | per seed | failed seeds |",
        "|---|---|---|---|",
    ]
    for row, entry in table["rows"].items():
        mean = "—" if entry["mean"] is None else f"{100 * entry['mean']:.2f}"
        sd = "" if entry["sd"] is None else f" ± {100 * entry['sd']:.2f}"
        seeds = ", ".join(
            f"{s}: {100 * v:.2f}" for s, v in zip(entry["seeds"], entry["values"], strict=True)
        )
        failed = ", ".join(str(s) for s in entry["failed_seeds"]) or "—"
        lines.append(f"| {LABELS.get(row, row)} | {mean}{sd} | {seeds} | {failed} |")
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
