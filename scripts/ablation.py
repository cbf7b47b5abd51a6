"""Train several settings over several seeds and tabulate their test average mAP.

Each (setting, seed) is one ordinary ``python -m asl_tal.train`` run in its own run
directory; the table reads their ``results/test_metrics.json``. Runs whose metrics already
exist are not repeated, so an interrupted ablation continues where it stopped.

    python scripts/ablation.py --out outputs/ablation --seeds 0 1 2 --setting asl= \\
        --setting "baseline=model.sensitivity.class_level=false \\
                   model.sensitivity.instance_level=false model.ascl.weight=0"

Prints a JSON summary (per setting: per-seed values, mean, std) and writes it to
``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path


def parse_setting(text: str) -> tuple[str, list[str]]:
    """``"name=override override ..."`` → ``(name, [overrides])``."""
    name, _, overrides = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"setting {text!r}: expected NAME=OVERRIDES")
    return name, shlex.split(overrides)


def run(out: Path, name: str, overrides: list[str], seed: int, common: list[str]) -> dict:
    """Train one (setting, seed) unless its metrics exist; returns its test metrics."""
    run_dir = out / name / f"seed{seed}"
    metrics_file = run_dir / "results" / "test_metrics.json"
    if not metrics_file.is_file():
        cmd = [
            sys.executable,
            "-m",
            "asl_tal.train",
            f"seed={seed}",
            f"hydra.run.dir={run_dir}",
            *common,
            *overrides,
        ]
        print("running:", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    return json.loads(metrics_file.read_text())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="parent of all run dirs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--setting", type=parse_setting, action="append", required=True, help="NAME=OVERRIDES"
    )
    parser.add_argument(
        "--common", default="logger=csv", help="overrides shared by every run (one string)"
    )
    args = parser.parse_args(argv)
    common = shlex.split(args.common)
    summary = {}
    for name, overrides in args.setting:
        values = [
            run(args.out, name, overrides, seed, common)["average_mAP"] for seed in args.seeds
        ]
        summary[name] = {
            "overrides": overrides,
            "seeds": args.seeds,
            "average_mAP": values,
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
