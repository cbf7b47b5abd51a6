"""A command's run folder: where it is (Hydra's run directory), that it can be written,
that a new training run does not overwrite another run's checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from asl_tal.errors import OutputWriteError, UserInputError
from asl_tal.outputs import check_writable


def command_line_overrides() -> list[str]:
    """The overrides this Hydra job was given on the command line ([] outside Hydra)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def run_dir() -> Path:
    """The Hydra run directory of this job (the current directory outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def prepare_results_dir(directory: Path) -> Path:
    """``directory/results``, created and checked writable before any work is done."""
    out = directory / "results"
    check_writable(out)
    return out


class WritableOutputDir(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the run directory, or a multirun's
    sweep directory, is created and checked writable before Hydra writes its files there;
    one that cannot be is one ``error:`` line and exit status 2, not Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.sweep.dir))

    @staticmethod
    def _check(directory: Path) -> None:
        # before any job: the whole run (or sweep) stops, also in a multirun
        try:
            check_writable(directory)
        except OutputWriteError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None


def check_fresh_run_dir(directory: Path, ckpt_path: Path | None) -> None:
    """Refuse to train into ``directory`` when it already holds checkpoints (a new run would
    overwrite them), unless ``ckpt_path`` lies inside it (resuming that run)."""
    existing = sorted((directory / "checkpoints").glob("*.ckpt"))
    if not existing:
        return
    if ckpt_path is not None and ckpt_path.resolve().is_relative_to(directory.resolve()):
        return
    names = ", ".join(p.name for p in existing)
    raise UserInputError(
        f"run directory {directory} already holds checkpoints ({names}) that this run would "
        f"overwrite: choose another hydra.run.dir, or resume it with "
        f"ckpt_path={directory / 'checkpoints' / existing[-1].name}"
    )
