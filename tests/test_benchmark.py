"""The benchmark entry point and its sub-commands, its growth-exponent fit, and the exactness
of the fast paths."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shlex
import sys
from pathlib import Path

import pytest
import torch
from asl_tal.conf import compose

from asl_tal.objective.sensitivity import InstanceSensitivity, per_gt_is_cheaper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark  # noqa: E402  (scripts/ is not a package)
from benchmarking.timing import fit_growth_exponent, summarize  # noqa: E402


def run_benchmark(argv: list[str]) -> dict:
    """``benchmark.main(argv)`` in this process: the JSON it prints, checked against the one
    it returns; torch's thread count and random state are left as they were."""
    threads = torch.get_num_threads()
    stdout = io.StringIO()
    try:
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(stdout):
            returned = benchmark.main(argv)
    finally:
        torch.set_num_threads(threads)
    printed = json.loads(stdout.getvalue())
    assert printed == json.loads(json.dumps(returned))
    assert shlex.split(printed["command"]) == ["python", "scripts/benchmark.py", *argv]
    return printed


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    printed = run_benchmark(
        ["pipeline", "--config", "tiny", "--repeats", "1", "--threads", "1", "--profile",
         "--out", str(out)]
    )  # fmt: skip
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
    assert benchmark.pipeline.count_gflop(lambda: torch.ones(30, 40) @ torch.ones(40, 50)) == (
        pytest.approx(2 * 30 * 40 * 50 / 1e9)
    )
    conv = torch.nn.Conv1d(8, 16, 3, padding=1)
    assert benchmark.pipeline.count_gflop(lambda: conv(torch.ones(2, 8, 100))) == pytest.approx(
        2 * 2 * 100 * 8 * 16 * 3 / 1e9
    )


def test_compare_runs_both_settings_and_reports_their_ratio():
    compare = run_benchmark(
        ["pipeline", "--config", "tiny", "--repeats", "2", "--threads", "1",
         "--compare", "model.ascl.weight=0", ""]
    )["compare"]  # fmt: skip
    assert compare["A"]["overrides"] == "model.ascl.weight=0"
    assert compare["A"]["step"]["n"] == compare["B"]["step"]["n"] == 2
    want = compare["A"]["step"]["median_s"] / compare["B"]["step"]["median_s"]
    assert compare["ratio_A_over_B"] == pytest.approx(want, abs=2e-3)


def test_eval_times_the_scorer_and_soft_nms_at_two_batch_sizes():
    report = run_benchmark(
        ["eval", "--videos", "3", "--preds", "40", "--classes", "4", "--gt", "5",
         "--candidates", "300", "--batch", "4", "--repeats", "1"]
    )  # fmt: skip
    scorer = report["scorer"]
    assert scorer["predictions"] == 3 * 40 and scorer["gt"] == 3 * 5
    assert scorer["thresholds"] == 5  # tIoU 0.3:0.1:0.7
    assert _positive(scorer["seconds"]) and 0.0 <= scorer["average_mAP"] <= 1.0
    nms = report["soft_nms"]
    assert nms["kept_per_video"] == compose("train").postprocess.max_seg_num
    single, batched = nms["ms_per_video_batch_1"], nms["ms_per_video_batch_4"]
    assert _positive(single) and _positive(batched)
    assert nms["batch_speedup"] == pytest.approx(single / batched, rel=0.01, abs=0.01)


@pytest.mark.slow  # THUMOS-sized feature files at a fixed size: in .ci/run's slow step
def test_loading_times_four_settings_of_a_thumos_batch():
    report = run_benchmark(["loading", "--repeats", "1", "--threads", "1"])
    assert report["videos"] == {"video_a": 2500, "video_b": 4500} and report["dim"] == 2048
    for setting in ("eval_full", "train_crop", "fixed_1024", "fixed_1024_cached"):
        assert _positive(report[f"{setting}_s"]), setting
    ratio = report["fixed_1024_s"] / report["fixed_1024_cached_s"]
    assert report["fixed_1024_uncached_over_cached"] == pytest.approx(ratio, abs=0.01)


@pytest.mark.slow  # the THUMOS shape is fixed: in .ci/run's slow step
def test_losses_times_three_settings_and_their_ratio():
    report = run_benchmark(["losses", "--repeats", "1", "--threads", "1"])
    # six pyramid levels of T 1024: 1024 + 512 + ... + 32 points
    assert report["shape"]["P"] == sum(1024 >> level for level in range(6))
    for setting in ("all_on", "no_ascl", "sensitivity_off"):
        assert _positive(report[setting]["median_s"]), setting
        assert report[setting]["min_s"] <= report[setting]["median_s"]
    ratio = report["all_on"]["median_s"] / report["sensitivity_off"]["median_s"]
    assert report["ratio_all_on_vs_off"] == pytest.approx(ratio)


def test_preflight_times_a_cold_and_warm_pass_and_removes_its_files(tmp_path):
    report = run_benchmark(["preflight", "--files", "4", "--repeats", "2", "--dir", str(tmp_path)])
    assert report["files"] == 4 and report["warm"]["repeats"] == 2
    for figures in (report, report["cold"], report["warm"]):
        assert _positive(figures["seconds"])
        # seconds are rounded to 0.1 ms: per file that is 0.0125 ms either way
        assert figures["per_file_ms"] == pytest.approx(1e3 * figures["seconds"] / 4, abs=0.013)
    assert (report["seconds"], report["per_file_ms"]) == (
        report["warm"]["seconds"],
        report["warm"]["per_file_ms"],
    )
    # four float32 files of T in 400..2,300 steps × 2,048 values, rounded to 0.01 GB
    assert 0.01 <= report["apparent_gb"] <= 4 * 2300 * 2048 * 4 / 1e9 + 0.01
    assert list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize("way", ["per_gt", "dense_and_ends"])
@pytest.mark.parametrize("l4", [0, 1, 2, 3])
def test_both_ways_of_inside_gts_equal_per_gt_evaluation(l4, way, monkeypatch):
    """Both ways of ``inside_gts`` (each GT as a span; the dense pass + boundary windows)
    equal Φ run on each GT's frames alone."""
    monkeypatch.setattr(
        "asl_tal.objective.sensitivity.per_gt_is_cheaper", lambda *args: way == "per_gt"
    )
    generator = torch.Generator().manual_seed(l4)
    d, seq_len = 6, 40
    inst = InstanceSensitivity(d, l4, None, "inside_gt", 16)
    with torch.no_grad():
        for param in inst.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    feats = torch.randn(2, d, seq_len, generator=generator)
    valid = torch.ones(2, seq_len, dtype=torch.bool)
    valid[1, 30:] = False
    valid[0, 15] = False  # a hole inside a GT: both its sides see a zero there
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


def test_per_gt_is_cheaper_by_hand():
    # 2 GTs of 10 frames in 2 videos of 40: 20 + 2 = 22 against 80 + 2·2·(3·2 + 1) = 108
    assert per_gt_is_cheaper(20, 2, 80, 2)
    # 30 overlapping GTs covering 40 frames each: 1,200 + 30 against 80 + 60·7 = 500
    assert not per_gt_is_cheaper(1200, 30, 80, 2)
    # l4 = 0: no windows; 80 + 0 = 80 against 79 + 1 = 80 (a tie takes the per-GT way)
    assert per_gt_is_cheaper(79, 1, 80, 0)
    assert not per_gt_is_cheaper(80, 1, 80, 0)


FAKE_ACTIONFORMER = {
    "libs/__init__.py": "",
    "libs/core/__init__.py": (
        "def load_config(path):\n"
        "    return {'model_name': 'fake', 'model': {'max_seq_len': 2304},\n"
        "            'opt': {'lr': 0.1}, 'train_cfg': {'clip_grad_l2norm': 1.0}}\n"
    ),
    "libs/utils/__init__.py": (
        "import torch\n"
        "def make_optimizer(model, cfg):\n"
        "    return torch.optim.SGD(model.parameters(), lr=cfg['lr'])\n"
    ),
    "libs/modeling/__init__.py": (
        "import time\n"
        "import torch\n"
        "BUILT, SEEN = [], []\n"
        "class Fake(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.ones(()))\n"
        "    def forward(self, videos):\n"
        "        time.sleep(0.01)  # a time the reported medians resolve\n"
        "        shapes = [(tuple(v['feats'].shape), tuple(v['segments'].shape),\n"
        "                   tuple(v['labels'].shape)) for v in videos]\n"
        "        SEEN.append((self.training, shapes))\n"
        "        return {'final_loss': self.w * 2.0} if self.training else []\n"
        "def make_meta_arch(name, **kwargs):\n"
        "    BUILT.append((name, kwargs))\n"
        "    return Fake()\n"
    ),
}


@pytest.fixture
def fake_actionformer(tmp_path):
    """A stand-in ActionFormer checkout (its entry points only); its modules are dropped after."""
    for name, text in FAKE_ACTIONFORMER.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = list(sys.path)
    yield tmp_path
    sys.path[:] = path
    for name in [m for m in sys.modules if m == "libs" or m.startswith("libs.")]:
        del sys.modules[name]


def test_actionformer_times_each_setting_beside_its_model_on_the_same_inputs(fake_actionformer):
    report = run_benchmark(
        ["actionformer", "--af-source", str(fake_actionformer), "--config", "tiny",
         "--seq-len", "64", "--repeats", "2", "--warmup", "1",
         "--setting", "", "--setting", "model.network.attn_window=9"]
    )  # fmt: skip
    modeling = sys.modules["libs.modeling"]
    tiny = compose("train", ["dataset=synthetic", "logger=none"])
    width, classes = tiny.dataset.input_dim, tiny.dataset.num_classes
    assert modeling.BUILT == [
        ("fake", {"max_seq_len": 64, "input_dim": width, "num_classes": classes})
    ]
    # 2 settings x (1 warm-up + 2 timed) training steps of two videos, then as many
    # single-video inferences, each with the benchmark's 30 GT segments per video
    video = ((width, 64), (30, 2), (30,))
    step, detect = (True, [video, video]), (False, [video])
    assert modeling.SEEN == ([step] * 3 + [detect] * 3) * 2
    assert [row["setting"] for row in report["rows"]] == ["", "model.network.attn_window=9"]
    for row in report["rows"]:
        for part in ("train_step", "inference"):
            timed = row[part]
            assert timed["ours"]["n"] == timed["actionformer"]["n"] == 2
            ratio = timed["ours"]["median_s"] / timed["actionformer"]["median_s"]
            assert timed["ratio_of_medians"] == pytest.approx(ratio, rel=1e-2, abs=1e-3)


def test_actionformer_refuses_a_folder_that_is_not_its_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_benchmark(["actionformer", "--af-source", str(tmp_path)])
    assert str(exit_info.value) == f"error: --af-source {tmp_path}: no libs/modeling in it"
