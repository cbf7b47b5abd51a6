"""The benchmark entry point, its growth-exponent fit, and the exactness of the fast paths."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asl_tal.bench import fit_growth_exponent, summarize
from asl_tal.objective.sensitivity import InstanceSensitivity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark  # noqa: E402  (scripts/ is not a package)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--config", "tiny",
         "--repeats", "1", "--profile", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed
    return printed


def test_tiny_benchmark_reports_every_section(tiny_report):
    machine = tiny_report["machine"]
    assert {"cpu", "cores", "torch", "threads", "loadavg"} <= set(machine)
    assert len(machine["loadavg"]) == 3

    train = tiny_report["train"]
    for part in ("forward", "backward", "optimizer", "step"):
        assert _positive(train[part]["median_s"]), part
        assert train[part]["min_s"] <= train[part]["median_s"] <= train[part]["max_s"]
    parts = sum(train[p]["median_s"] for p in ("forward", "backward", "optimizer"))
    assert train["step"]["median_s"] == pytest.approx(parts, rel=1e-3)
    assert _positive(train["peak_rss_mb"]) and train["parameters"] > 0

    infer = tiny_report["infer"]["mean_per_video_s"]
    for part in ("network", "decode", "nms", "total"):
        assert _positive(infer[part]), part
    assert infer["total"] == pytest.approx(
        infer["network"] + infer["decode"] + infer["nms"], abs=1e-4
    )
    assert _positive(tiny_report["nms"]["ms_per_video"])
    assert _positive(tiny_report["score"]["score"]["median_s"])
    assert _positive(tiny_report["load"]["train_crop_median_s"])
    assert _positive(tiny_report["load"]["eval_full_median_s"])
    for setting in tiny_report["scaling"].values():
        assert all(_positive(v) for v in setting["seconds"].values())
        assert math.isfinite(setting["growth_exponent"])
    assert set(tiny_report["scaling"]) == {"global", "window_9"}
    assert _positive(tiny_report["peak_memory"]["peak_rss_mb"])
    assert _positive(train["gflop_per_step"]) and _positive(train["achieved_gflop_per_s"])
    ops = train["profile_top_ops"]
    assert ops and all(_positive(op["self_cpu_ms"]) and op["calls"] >= 1 for op in ops)
    assert sum(op["share"] for op in ops) <= 1.0 + 1e-6
    assert _positive(tiny_report["infer"]["network_gflop_per_video"])
    peak = tiny_report["peak"]
    assert _positive(peak["float32_gflop_per_s"]) and _positive(peak["bfloat16_gflop_per_s"])


def test_flop_count_of_a_matrix_product_and_a_convolution():
    # 2·m·k·n for (m × k) @ (k × n); 2·B·T·C_in·C_out·k for a same-padded Conv1d
    assert benchmark.count_gflop(lambda: torch.ones(30, 40) @ torch.ones(40, 50)) == (
        pytest.approx(2 * 30 * 40 * 50 / 1e9)
    )
    conv = torch.nn.Conv1d(8, 16, 3, padding=1)
    assert benchmark.count_gflop(lambda: conv(torch.ones(2, 8, 100))) == pytest.approx(
        2 * 2 * 100 * 8 * 16 * 3 / 1e9
    )


def test_compare_runs_both_settings_and_reports_their_ratio():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--config", "tiny",
         "--repeats", "2", "--compare", "model.ascl.weight=0", ""],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    compare = json.loads(proc.stdout)["compare"]
    assert compare["A"]["overrides"] == "model.ascl.weight=0"
    assert compare["A"]["step"]["n"] == compare["B"]["step"]["n"] == 2
    want = compare["A"]["step"]["median_s"] / compare["B"]["step"]["median_s"]
    assert compare["ratio_A_over_B"] == pytest.approx(want, abs=2e-3)


def test_growth_exponent_fit_recovers_power_laws():
    sizes = [256, 512, 1024, 2048, 4096]
    assert fit_growth_exponent(sizes, [3e-6 * n**2 for n in sizes]) == pytest.approx(2.0)
    assert fit_growth_exponent(sizes, [0.5 * n for n in sizes]) == pytest.approx(1.0)
    # noise of ±10 % alternating around n^1.5 keeps the slope near 1.5
    noisy = [n**1.5 * (1.1 if i % 2 else 0.9) for i, n in enumerate(sizes)]
    assert fit_growth_exponent(sizes, noisy) == pytest.approx(1.5, abs=0.1)
    # hand case: times 1, 4 at sizes 1, 2 -> slope log 4 / log 2 = 2
    assert fit_growth_exponent([1, 2], [1.0, 4.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        fit_growth_exponent([8, 8], [1.0, 2.0])


def test_summarize_median_and_spread():
    stats = summarize([1.0, 3.0, 2.0])
    assert stats["median_s"] == 2.0 and stats["min_s"] == 1.0 and stats["max_s"] == 3.0
    assert stats["spread"] == pytest.approx(1.0)  # (3 - 1) / 2


@pytest.mark.parametrize("l4", [0, 1, 2, 3])
def test_dense_inside_gts_equals_per_gt_evaluation(l4):
    """The dense pass + boundary windows equals Φ run on each GT's frames alone."""
    generator = torch.Generator().manual_seed(l4)
    d, seq_len = 6, 40
    inst = InstanceSensitivity(d, l4, "inside_gt", 16)
    with torch.no_grad():
        for param in inst.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    feats = torch.randn(2, d, seq_len, generator=generator)
    valid = torch.ones(2, seq_len, dtype=torch.bool)
    valid[1, 30:] = False
    # short and long GTs, overlapping ones, at both video ends, into the padding, and one
    # between two grid frames (no frame inside)
    segments = torch.tensor(
        [
            [[0.0, 5.5], [3.2, 4.9], [2.0, 20.0], [10.0, 11.0], [35.5, 39.0], [7.2, 7.8]],
            [[1.5, 2.5], [25.0, 36.0], [5.0, 28.0], [0.0, 1.0], [12.0, 13.0], [0.0, 0.0]],
        ]
    )
    seg_mask = torch.ones(2, 6, dtype=torch.bool)
    seg_mask[1, 5] = False
    q_cls, q_loc = inst.inside_gts(feats, valid, segments, seg_mask)

    grid = torch.arange(seq_len).float()
    for b in range(2):
        for n in range(6):
            a, e = segments[b, n]
            region = (grid >= a) & (grid <= e) & valid[b] & seg_mask[b, n]
            for phi, got in ((inst.phi_cls, q_cls), (inst.phi_loc, q_loc)):
                with torch.no_grad():
                    want = phi(feats[b][None] * region, region[None])[0] * region
                torch.testing.assert_close(got[b, n], want, atol=1e-5, rtol=1e-5)
