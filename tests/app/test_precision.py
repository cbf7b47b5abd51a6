"""``trainer.precision: auto``: bf16 only where the hardware runs it natively."""

from __future__ import annotations

import pytest

from asl_tal.cli import build


def write_cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    return path


def test_cpu_flags_read_the_flags_line(tmp_path):
    path = write_cpuinfo(tmp_path, "fpu sse2 avx512f avx512_bf16")
    assert build.cpu_flags(path) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert build.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f"}, "32-true"),
        ({"avx512f", "avx512_bf16"}, "bf16-mixed"),
        ({"amx_bf16", "amx_tile"}, "bf16-mixed"),
        (set(), "32-true"),
    ],
)
def test_auto_on_cpu_follows_native_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(build, "cpu_flags", lambda: flags)
    precision, reason = build.choose_precision("auto", "cpu")
    assert precision == expected
    assert ("natively" in reason) is (expected == "bf16-mixed")


def test_explicit_precision_is_kept(monkeypatch):
    monkeypatch.setattr(build, "cpu_flags", lambda: {"avx512_bf16"})
    assert build.choose_precision("32-true", "cpu") == ("32-true", "as configured")
    assert build.choose_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"


def test_auto_on_a_gpu_without_bf16_is_float32(monkeypatch):
    monkeypatch.setattr(build.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(build.torch.cuda, "is_bf16_supported", lambda: False)
    assert build.choose_precision("auto", "gpu")[0] == "32-true"
    monkeypatch.setattr(build.torch.cuda, "is_bf16_supported", lambda: True)
    assert build.choose_precision("auto", "auto")[0] == "bf16-mixed"
