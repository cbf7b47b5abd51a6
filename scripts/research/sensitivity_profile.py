"""Print how a trained model's action sensitivity runs across the actions of a test set.

Usage: ``python scripts/research/sensitivity_profile.py CHECKPOINT [--parts 5] [OVERRIDES...]``

The overrides select the data as for ``asl_tal.train`` (e.g. the ``dataset=custom ...``
of a real-feature benchmark). Every GT action of the test subset is evaluated with the
checkpoint's EMA weights on its level-0 frames (``ASLDetector.sensitivity_maps``, the curves
``viz.plot_sensitivity`` draws), and a markdown table gives, per curve, the mean over
actions of each consecutive part of the action, the median within-action sd / mean, and in
which part the lowest frame lies (``viz.sensitivity_by_position``).
"""

from __future__ import annotations

import argparse

import torch
from asl_tal.conf import compose

from asl_tal import viz
from asl_tal.app import build_datamodule
from asl_tal.checkpoints import check_trained_on, load_checkpoint


def profile(checkpoint: str, overrides: list[str], parts: int) -> dict:
    """:func:`viz.sensitivity_by_position` over the test subset's GT actions."""
    cfg = compose("train", overrides)
    module = load_checkpoint(checkpoint).eval()
    datamodule = build_datamodule(cfg, l3=module.detector.network.l3)
    datamodule.prepare_data()
    datamodule.setup("test")
    names = list(datamodule.class_map.names)
    check_trained_on(module.hparams, checkpoint, names, datamodule.cfg.input_dim)
    records = []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            records.extend(module.eval_detector.sensitivity_maps(batch))
    return viz.sensitivity_by_position(records, parts)


def markdown(table: dict, parts: int) -> str:
    """The table of :func:`profile` as markdown, one row per curve."""
    head = " | ".join(f"part {k + 1}" for k in range(parts))
    lines = [
        f"{table['count']} actions, each split into {parts} parts, start to end",
        "",
        f"| curve | {head} | median sd / mean | lowest frame in part 1..{parts} |",
        "|---" * (parts + 3) + "|",
    ]
    for name, row in table.items():
        if name == "count":
            continue
        means = " | ".join(f"{m:.2f}" for m in row["means"])
        lowest = " / ".join(str(n) for n in row["lowest"])
        lines.append(f"| `{name}` | {means} | {100 * row['spread']:.1f} % | {lowest} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--parts", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides selecting the data")
    args = parser.parse_args()
    print(markdown(profile(args.checkpoint, args.overrides, args.parts), args.parts))


if __name__ == "__main__":
    main()
