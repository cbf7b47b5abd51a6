"""Print the ASL network's per-level output shapes, parameter counts and CPU fwd+bwd time.

Usage: ``python scripts/model_summary.py [--repeats 5] [--threads 2] [--skip-timing]``

Prints one JSON object: for the THUMOS14 and Ego4D configurations, the per-level shapes of
``cls_logits``, ``offsets`` and ``feats`` for a batch of 2, the parameter count in total and
per part, and (THUMOS14 only) the median forward and forward+backward time of the network
alone, batch 2, T 1024, after one warm-up step, with and without the channel-attention
branch (same run, so their ratio is meaningful on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.models.network import ASLNetwork


def network_config(dataset: str) -> dict:
    """``ASLNetwork`` keyword arguments of ``dataset=<dataset>``'s row."""
    cfg = compose("train", [f"dataset={dataset}"])
    network = OmegaConf.to_container(cfg.model.network, resolve=True)
    return {**network, "num_classes": cfg.dataset.num_classes}


CONFIGS = {"thumos14": network_config("thumos14"), "ego4d": network_config("ego4d_mq")}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(net: ASLNetwork) -> dict[str, int]:
    enc = net.encoder
    return {
        "total": count(net),
        "projection": count(enc.projection),
        "tcn": count(enc.tcn),
        "stride1_blocks": count(enc.stem),
        "downsampling_blocks": count(enc.downsample),
        "pyramid_norms": count(enc.pyramid_norms),
        "cls_head": count(net.cls_head),
        "loc_head": count(net.loc_head),
    }


def shapes(net: ASLNetwork, seq_len: int) -> dict[str, list[list[int]]]:
    feats = torch.randn(2, sum(net.input_dims), seq_len)
    mask = torch.ones(2, seq_len, dtype=torch.bool)
    with torch.no_grad():
        out = net.eval()(feats, mask)
    return {
        name: [list(t.shape) for t in getattr(out, name)]
        for name in ("cls_logits", "offsets", "feats")
    }


def time_step(net: ASLNetwork, seq_len: int, repeats: int) -> dict[str, float]:
    """Median seconds of forward and of forward+backward (sum of all outputs as the loss)."""
    net.train()
    feats = torch.randn(2, sum(net.input_dims), seq_len)
    mask = torch.ones(2, seq_len, dtype=torch.bool)
    mask[1, seq_len * 3 // 4 :] = False
    fwd, total = [], []
    for step in range(repeats + 1):
        net.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = net(feats, mask)
        mid = time.perf_counter()
        loss = sum(o.sum() for o in out.cls_logits + out.offsets)
        loss.backward()
        end = time.perf_counter()
        if step:  # the first step is the warm-up
            fwd.append(mid - start)
            total.append(end - start)
    return {
        "forward_s": round(statistics.median(fwd), 3),
        "forward_backward_s": round(statistics.median(total), 3),
        "forward_backward_all_s": [round(t, 3) for t in total],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = {}
    for name, config in CONFIGS.items():
        net = ASLNetwork(**config)
        report[name] = {
            "config": config,
            "num_levels": net.num_levels,
            "required_multiple": net.required_multiple,
            "parameters": parameter_counts(net),
            "shapes_batch2_T": args.seq_len,
            "shapes": shapes(net, args.seq_len),
        }
        if name == "thumos14" and not args.skip_timing:
            no_ca = ASLNetwork(**{**config, "channel_attention": False})
            report[name]["timing_cpu"] = {
                "batch": 2,
                "seq_len": args.seq_len,
                "threads": args.threads,
                **time_step(net, args.seq_len, args.repeats),
                "without_channel_attention": time_step(no_ca, args.seq_len, args.repeats),
            }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
