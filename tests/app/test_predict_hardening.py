"""``asl-predict`` (run in this process) on hostile input folders: every readable video gets its
detections, every skipped input is named, and no existing file but an earlier result is
overwritten."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.commands import run_command
from helpers.runs import read_json

from asl_tal.cli.predict import guard_predict_step, is_predict_results
from asl_tal.cli.predict import main as predict_main
from asl_tal.data.feature_folder import Skipped
from asl_tal.lit_module import ASLLitModule

DIM = 64  # the tiny config's feature width


def feats(length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(length, DIM)).astype(np.float32)


def save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:  # np.save(path) would append ".npy" to "x.NPY"
        np.save(f, array)


def run_predict(trained_run: Path, tmp_path: Path, input_path: Path, output: Path):
    proc = run_command(
        "predict",
        "debug=tiny",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
        f"input={input_path}",
        f"output={output}",
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def stderr_lines(proc, word: str) -> list[str]:
    return [line for line in proc.stderr.splitlines() if word in line]


def test_a_corrupt_file_is_skipped_and_named_the_others_are_written(trained_run, tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    save_npy(folder / "good_a.npy", feats(90, 1))
    save_npy(folder / "good_b.npy", feats(120, 2))
    (folder / "broken.npy").write_bytes(b"\x93NUMPY not really")
    out = tmp_path / "pred.json"
    proc = run_predict(trained_run, tmp_path, folder, out)
    assert proc.returncode == 2
    assert set(read_json(out)["results"]) == {"good_a", "good_b"}
    (line,) = stderr_lines(proc, "broken.npy")
    assert "skipped" in line and "cannot read features" in line
    assert "1 inputs skipped" in proc.stderr


def test_hdf5_and_upper_case_suffixes_are_read_other_files_ignored(trained_run, tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    with h5py.File(folder / "videos.h5", "w") as h5:
        h5["vid_1"] = feats(80, 1)
        h5["vid_2"] = feats(60, 2)
    save_npy(folder / "LOUD.NPY", feats(70, 3))
    (folder / "notes.txt").write_text("not features")
    out = tmp_path / "pred.json"
    proc = run_predict(trained_run, tmp_path, folder, out)
    # an unsupported file is listed but is not an error
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(read_json(out)["results"]) == {"vid_1", "vid_2", "LOUD"}
    (line,) = stderr_lines(proc, "notes.txt")
    assert "ignored" in line and "unsupported suffix" in line


def test_two_files_with_the_same_stem_are_an_error_naming_both(trained_run, tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    save_npy(folder / "twin.npy", feats(50, 1))
    np.savez(folder / "twin.npz", feats=feats(50, 2))
    save_npy(folder / "single.npy", feats(50, 3))
    out = tmp_path / "pred.json"
    proc = run_predict(trained_run, tmp_path, folder, out)
    assert proc.returncode == 2
    (line,) = stderr_lines(proc, "twin.npy")
    assert "twin.npz" in line and "'twin'" in line
    # the ambiguous video is not merged or guessed: only the other one is written
    assert set(read_json(out)["results"]) == {"single"}


def test_nothing_readable_writes_nothing(trained_run, tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    save_npy(folder / "narrow.npy", np.zeros((40, DIM // 2), np.float32))
    out = tmp_path / "pred.json"
    proc = run_predict(trained_run, tmp_path, folder, out)
    assert proc.returncode == 2
    assert "wrong feature width" in proc.stderr and "nothing written" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("target", "message"),
    [("input", "one of the input feature files"), ("unrelated", "not a predict results file")],
)
def test_output_never_overwrites_an_input_or_an_unrelated_file(
    trained_run, tmp_path, target, message
):
    folder = tmp_path / "feats"
    folder.mkdir()
    save_npy(folder / "clip.npy", feats(60))
    if target == "input":
        out = folder / "clip.npy"
    else:
        out = tmp_path / "notes.json"
        out.write_text(json.dumps({"results": "my own notes, not detections"}))
    before = out.read_bytes()
    proc = run_predict(trained_run, tmp_path, folder, out)
    assert proc.returncode == 2
    (line,) = stderr_lines(proc, "error:")
    assert message in line and str(out) in line
    assert out.read_bytes() == before
    # refused before any work: no inference ran
    assert "detections written" not in proc.stdout


def test_output_overwrites_an_earlier_predict_result(trained_run, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, name in ((first, "old_clip"), (second, "new_clip")):
        folder.mkdir()
        save_npy(folder / f"{name}.npy", feats(60))
    out = tmp_path / "pred.json"
    assert run_predict(trained_run, tmp_path, first, out).returncode == 0
    assert set(read_json(out)["results"]) == {"old_clip"}
    proc = run_predict(trained_run, tmp_path, second, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(read_json(out)["results"]) == {"new_clip"}


def predict_batches(monkeypatch, trained_run: Path, tmp_path: Path, folder: Path, size: int):
    """The results of predict run in process on ``folder`` with ``dataset.eval_batch_size``
    ``size``, and the number of videos of each batch it ran."""
    sizes: list[int] = []
    predict_step = ASLLitModule.predict_step

    def recording(self, batch, batch_idx):
        sizes.append(len(batch))
        return predict_step(self, batch, batch_idx)

    out = tmp_path / f"batch_{size}.json"
    argv = [
        "asl-predict",
        "debug=tiny",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp_path / f'run_{size}'}",
        f"ckpt_path={trained_run / 'checkpoints' / 'best.ckpt'}",
        f"input={folder}",
        f"output={out}",
        f"dataset.eval_batch_size={size}",
    ]
    with monkeypatch.context() as patch:
        patch.setattr(ASLLitModule, "predict_step", recording)
        patch.setattr(sys, "argv", argv)
        predict_main()  # returns: every video is read (a skipped one would exit 2)
    return read_json(out)["results"], sizes


def test_batched_videos_get_the_detections_they_get_one_at_a_time(
    monkeypatch, trained_run, tmp_path
):
    folder = tmp_path / "feats"
    folder.mkdir()
    lengths = {"clip_a": 40, "clip_b": 150, "clip_c": 61, "clip_d": 90}
    for i, (name, length) in enumerate(lengths.items()):
        save_npy(folder / f"{name}.npy", feats(length, i))
    alone, alone_sizes = predict_batches(monkeypatch, trained_run, tmp_path, folder, 1)
    batched, batched_sizes = predict_batches(monkeypatch, trained_run, tmp_path, folder, 3)
    assert (alone_sizes, batched_sizes) == ([1, 1, 1, 1], [3, 1])
    assert set(alone) == set(batched) == set(lengths)
    assert sum(len(rows) for rows in alone.values()) > 0
    for video_id, rows in alone.items():
        assert len(batched[video_id]) == len(rows), video_id
        for one, other in zip(rows, batched[video_id], strict=True):
            assert one["label"] == other["label"]
            assert other["score"] == pytest.approx(one["score"], abs=1e-5)
            assert other["segment"] == pytest.approx(one["segment"], abs=1e-4)


# --- the pieces, without a model ---


def test_is_predict_results_recognises_only_the_layout_predict_writes(tmp_path):
    path = tmp_path / "r.json"
    entry = {"label": "a", "score": 0.5, "segment": [0.0, 1.0]}
    layout = {"version": "1.3", "results": {"v": [entry], "w": []}, "external_data": {}}
    path.write_text(json.dumps(layout))
    assert is_predict_results(path)
    for other in (
        {**layout, "extra": 1},
        {**layout, "results": {"v": [{**entry, "note": "x"}]}},
        {**layout, "results": []},
        [layout],
    ):
        path.write_text(json.dumps(other))
        assert not is_predict_results(path)
    path.write_bytes(b"\x93NUMPY\x01\x00")
    assert not is_predict_results(path)


def test_a_failing_inference_step_skips_its_videos_only():
    class Batch:
        video_ids = ("v",)

    class Module:
        def predict_step(self, batch, batch_idx):
            raise IndexError("empty candidate table")

    module = Module()
    failed = guard_predict_step(module, {"v": "feats/v.npy"})
    assert module.predict_step(Batch(), 0) == []
    reason = "inference failed (IndexError: empty candidate table)"
    assert failed == [Skipped("feats/v.npy", reason)]
