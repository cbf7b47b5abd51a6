"""Folders made once per test run and shared by every pytest-xdist worker (the recipe of
pytest-xdist's documentation: a folder beside the workers' own, made under a file lock by
the first worker that needs it; the others wait for it and reuse it)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock


def shared_folder(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``name`` of this test run, filled by ``make(folder)`` once."""
    base = factory.getbasetemp()
    # under xdist each worker's base is pytest-N/popen-gwK: pytest-N is this run's
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / name, root / f"{name}.done"
    with FileLock(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed first try left
            make(folder)
            done.touch()
    return folder


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """``{file: (size, mtime_ns)}`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextlib.contextmanager
def unchanged(folder: Path) -> Iterator[Path]:
    """``folder``, checked afterwards to hold the very files it held: tests that share it
    copy what they would change."""
    before = listing(folder)
    yield folder
    assert listing(folder) == before, f"a test changed the shared folder {folder}"
