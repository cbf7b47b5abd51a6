"""The Lightning checkpoint I/O of every run: checkpoints written atomically next to their
destination, and checked (:func:`asl_tal.checkpoints.check_archive_size`) before they load.

Lightning's own writer saves into a temporary file under ``$TMPDIR`` and moves it into place;
with the run folder on another file system (tmpfs ``/tmp``, NFS, Lustre) that move is a
truncate-and-copy, so a kill or a full disk half-way leaves a torn ``last.ckpt`` and the run
cannot be resumed. Here the temporary file is in the checkpoint's own folder and replaces the
checkpoint in one rename (:func:`asl_tal.outputs.write_atomically`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from asl_tal.checkpoints import check_archive_size
from asl_tal.errors import OutputWriteError
from asl_tal.outputs import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` that saves through :func:`write_atomically` and bounds the
    archive of each checkpoint it loads (resuming, testing ``best.ckpt``)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """``torch.save(checkpoint)`` to ``path``, whole or not at all.

        A write that fails (disk full, read-only folder) raises :class:`OutputWriteError`
        naming ``path`` and saying that its previous version is intact.
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda f: torch.save(checkpoint, f))
        except OSError as err:
            reason = err.strerror or str(err) or type(err).__name__
            kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
            raise OutputWriteError(
                f"cannot write checkpoint {path}: {reason}; {kept} (free space on its disk or "
                "make its folder writable)"
            ) from err

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Lightning's load after :func:`check_archive_size` of ``path``."""
        check_archive_size(Path(path))
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
