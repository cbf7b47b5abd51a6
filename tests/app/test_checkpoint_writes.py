"""Checkpoints are written whole or not at all, next to their destination whatever ``$TMPDIR``
is: a kill or a full disk half-way through a write leaves the previous ``last.ckpt`` intact
and resumable. A checkpoint archive whose entries would unpack far beyond its size is refused
before ``torch.load`` reads it."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from helpers.commands import run_command, run_process
from helpers.runs import error_line, fingerprint, tiny

from asl_tal.checkpoint_io import AtomicCheckpointIO
from asl_tal.checkpoints import CheckpointReadError, read_checkpoint
from asl_tal.errors import OutputWriteError


def temporaries(folder: Path) -> list[Path]:
    """The temporary files of checkpoint writes in ``folder``."""
    return sorted(folder.glob(".*.tmp"))


@pytest.fixture
def shm_run(tmp_path) -> Path:
    """A run folder on /dev/shm (tmpfs), with ``tmp_path`` (for ``$TMPDIR``) on another file
    system; removed afterwards."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm")
    if shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm and the test's tmp_path are on the same file system")
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="asl-tal-test-"))
    yield folder / "run"
    shutil.rmtree(folder)


def test_sigkill_in_a_checkpoint_write_across_file_systems_keeps_the_previous_last_ckpt(
    data_dir, shm_run, tmp_path
):
    # the run folder on tmpfs, $TMPDIR on disk: Lightning's own writer would move a temp file
    # across file systems (truncate + copy); the kill comes half-way through epoch 1's write
    record = tmp_path / "record.json"
    common = ("test_after_fit=false", "trainer.max_epochs=3")
    env = {"TMPDIR": str(tmp_path)}
    killed = run_process(
        "train",
        *tiny(data_dir, shm_run, *common),
        "+callbacks.kill._target_=helpers.callbacks.KillInCheckpointWrite",
        "+callbacks.kill.epoch=1",
        f"+callbacks.kill.record={record}",
        env=env,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    previous = json.loads(record.read_text())
    last = shm_run / "checkpoints" / "last.ckpt"
    assert fingerprint(last) == (previous["size"], previous["sha256"])
    assert torch.load(last, weights_only=True)["epoch"] == 0
    # the torn bytes are in the temporary file beside it, never in last.ckpt
    [torn] = temporaries(last.parent)
    assert torn.stat().st_size == previous["partial"]

    # resumed without hydra.run.dir: it goes on in that folder and ends the three epochs
    resume = [o for o in tiny(data_dir, shm_run, *common) if not o.startswith("hydra.run.dir=")]
    run_command("train", *resume, f"ckpt_path={last}", env=env)
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 3 * 6  # 24 videos, batch 4
    assert temporaries(last.parent) == []


def test_a_full_disk_in_a_checkpoint_write_is_one_line_and_keeps_the_previous_file(
    monkeypatch, data_dir, tmp_path
):
    real_save = torch.save
    kept: list[tuple[int, str]] = []

    def disk_full_at_epoch_1(obj, f, *args, **kwargs):
        name = Path(str(getattr(f, "name", "")))
        if isinstance(obj, dict) and obj.get("epoch") == 1 and name.name.startswith(".last."):
            kept.append(fingerprint(name.parent / "last.ckpt"))
            f.write(b"\0" * 1000)  # a part of it, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_epoch_1)
    run = tmp_path / "run"
    overrides = tiny(data_dir, run, "test_after_fit=false", "trainer.max_epochs=3")
    result = run_command("train", *overrides, check=False)
    last = run / "checkpoints" / "last.ckpt"
    error_line(
        result,
        f"cannot write checkpoint {last}",
        "No space left on device",
        "the previous last.ckpt is intact",
    )
    assert [fingerprint(last)] == kept
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert temporaries(last.parent) == []


@pytest.mark.parametrize(
    ("where", "err"),
    [("torch.save", errno.ENOSPC), ("os.replace", errno.EROFS), ("os.replace", errno.EACCES)],
)
def test_a_failed_write_raises_one_line_and_leaves_the_previous_file(
    monkeypatch, tmp_path, where, err
):
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    torch.save({"epoch": 0}, path)
    before = fingerprint(path)

    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    module, name = where.split(".")
    monkeypatch.setattr(sys.modules[module], name, fail)
    with pytest.raises(OutputWriteError) as info:
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message
    assert f"cannot write checkpoint {path}: {os.strerror(err)}" in message
    assert "the previous last.ckpt is intact" in message
    assert fingerprint(path) == before
    assert temporaries(path.parent) == []


def test_the_first_write_keeps_the_usual_file_permissions(tmp_path):
    path = tmp_path / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 0}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert torch.load(path, weights_only=True) == {"epoch": 0}


# --------------------------------------------------------------------------------------
# a deflated archive that would inflate far beyond its size
ZEROS = 16 << 20  # float32 values: 64 MiB of zeros, which deflate about 1000-fold


@pytest.fixture
def inflating_checkpoint(tmp_path) -> Path:
    """An asl-tal-looking checkpoint whose tensor of zeros is stored DEFLATE-compressed."""
    path = tmp_path / "inflating.ckpt"
    buffer = io.BytesIO()
    torch.save({"hyper_parameters": {"class_names": ["a"]}, "w": torch.zeros(ZEROS)}, buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry.filename))
    return path


def test_an_inflating_archive_is_refused_before_torch_load(monkeypatch, inflating_checkpoint):
    path = inflating_checkpoint
    size = path.stat().st_size
    assert size < ZEROS * 4 // 100  # the file is small, its tensor 64 MiB

    def never(*args, **kwargs):
        raise AssertionError("torch.load ran")

    monkeypatch.setattr(torch, "load", never)
    for load in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(CheckpointReadError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: its entries unpack to ")
        unpacked = int(message.split("unpack to ")[1].split(" bytes")[0].replace(",", ""))
        assert unpacked >= ZEROS * 4
        assert f"the file's {size:,} bytes" in message and "refusing to load it" in message


def test_eval_of_an_inflating_checkpoint_is_one_line(inflating_checkpoint, tmp_path):
    before = fingerprint(inflating_checkpoint)
    result = run_command(
        "eval",
        f"ckpt_path={inflating_checkpoint}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        check=False,
    )
    error_line(result, str(inflating_checkpoint), "unpack to")
    assert fingerprint(inflating_checkpoint) == before


def test_eval_names_its_run_folder_without_inflating_the_checkpoint(
    monkeypatch, inflating_checkpoint, tmp_path
):
    """The default run folder is named after the checkpoint's dataset: reading that name
    must not unpack the archive either."""

    def never(*args, **kwargs):
        raise AssertionError("torch.load ran")

    monkeypatch.setattr(torch, "load", never)
    result = run_command("eval", f"ckpt_path={inflating_checkpoint}", cwd=tmp_path, check=False)
    error_line(result, str(inflating_checkpoint), "unpack to")


def test_a_checkpoint_torch_save_wrote_loads(tmp_path):
    path = tmp_path / "stored.ckpt"
    state = {"w": torch.arange(1000.0)}
    torch.save({"hyper_parameters": {"class_names": ["a"]}, "state_dict": state}, path)
    torch.testing.assert_close(read_checkpoint(path)["state_dict"]["w"], state["w"])
