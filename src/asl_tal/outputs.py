"""Where the commands write, by one rule: no output replaces one of the command's inputs or
a file the command did not write (:func:`check_output`); a file appears whole or not at all
(:func:`write_atomically`); a run folder belongs to one run at a time (:func:`run_folder_lock`)
and eval / predict never write into a training run's folder (:func:`results_folder`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout
from lightning.pytorch.utilities import rank_zero_only

from asl_tal.data.feature_folder import not_regular
from asl_tal.errors import OutputWriteError, UserInputError

# the lock file each command holds in its run folder while it runs
LOCK_NAME = ".asl-tal.lock"
# what a temporary file of write_atomically is named: .<name>.<8 hex digits>.tmp
TEMP_SUFFIX = ".tmp"


class OutputError(UserInputError):
    """An output path that a command must not write (an input, a folder, a file it did not
    write, a run folder in use or of another run)."""


def check_output(
    out: str | Path,
    option: str,
    inputs: Iterable[tuple[str, str | Path | None]],
    ours: Callable[[Path], bool] | None = None,
    kind: str = "",
) -> None:
    """Refuse ``out`` (given as ``option``, e.g. ``--out``) when it is a folder, one of
    ``inputs`` (``(what it is, path)`` pairs, e.g. ``("the --gt file", gt)``; the same file by
    :func:`os.path.samefile`, so links count), or an existing file that ``ours`` does not
    recognise as ``kind`` (a file of the layout this command writes; without ``ours`` any
    existing file is refused). A missing ``out`` is always fine."""
    out = Path(out)
    if not out.exists():
        return
    if out.is_dir():
        raise OutputError(f"{option} {out} is a folder; give a file name (e.g. {out}/x.json)")
    if not out.is_file():
        raise OutputError(f"{option} {out}: {not_regular(out)}; give a file name")
    for what, path in inputs:
        if path is not None and Path(path).exists() and os.path.samefile(out, path):
            raise OutputError(f"{option} {out} is {what}; choose another path")
    if ours is None:
        raise OutputError(
            f"{option} {out} exists; refusing to overwrite it (choose another path or remove it)"
        )
    if not ours(out):
        raise OutputError(
            f"{option} {out} exists and is not {kind}; refusing to overwrite it (choose another "
            "path or remove it)"
        )


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(f)`` into a temporary file next to ``path``, flushed to disk, then renamed over
    ``path`` in one step (:func:`os.replace`).

    The temporary file is in ``path``'s folder, so on its file system whatever ``$TMPDIR`` is:
    a crash, a kill or a full disk leaves the previous ``path`` whole (a failed write removes
    its temporary file and raises; a killed one leaves ``.<name>.<hex>.tmp`` behind).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        # "x": a fresh file, created with the permissions (umask) of an ordinary one
        with tmp.open("xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself reaches the disk
    finally:
        os.close(folder)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files that killed :func:`write_atomically` calls left in
    ``folder``; call it only while holding the folder's :func:`run_folder_lock`."""
    stale = sorted(folder.glob(f".*{TEMP_SUFFIX}")) if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return stale


@contextlib.contextmanager
def run_folder_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock file while the body runs; a second command on the same
    folder (e.g. two runs given the same ``hydra.run.dir``) is refused with an
    :class:`OutputError` instead of mixing its files into this run's.

    Only rank 0 takes the lock: Lightning's launcher starts the other ranks of a distributed
    run in the folder rank 0 holds.
    """
    if rank_zero_only.rank != 0:
        yield
        return
    lock = FileLock(directory / LOCK_NAME, timeout=0)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise OutputError(
            f"run folder {directory} is in use by another run (it holds {directory / LOCK_NAME}); "
            "wait for that run to end or choose another hydra.run.dir"
        ) from None
    except OSError as err:
        raise OutputWriteError(
            f"cannot write {directory}: {err.strerror or err} (give a writable run directory "
            "with hydra.run.dir=...)"
        ) from err
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def results_folder(directory: Path, command: str) -> Iterator[None]:
    """The run folder of an ``eval`` or ``predict`` run: never a training run's folder
    (its ``checkpoints/`` and results stay that run's), locked while the body runs."""
    if (directory / "checkpoints").is_dir():
        raise OutputError(
            f"hydra.run.dir={directory} is the folder of a training run (it holds checkpoints/); "
            f"{command} writes into a run folder of its own: leave hydra.run.dir out or "
            "choose another"
        )
    with run_folder_lock(directory):
        yield
