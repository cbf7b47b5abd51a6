"""What hyper-parameter sweeps need from a training run: a check that the optional sweep
plugins are installed before Hydra looks for them, the value handed back to the sweeper
(the best validation score of the run, not the last epoch's), and the error a failed job of
a multirun raises so that Hydra records it as failed and the sweep goes on.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from collections.abc import Iterable, Sequence

import lightning as L
from hydra.errors import CompactHydraException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from asl_tal.config_blocks import ConfigValueError
from asl_tal.errors import UserInputError

SWEEP_EXTRA_HINT = "pip install 'asl-tal[sweep]'"

# conf/hydra/launcher/*.yaml share the plugins' names and set every field of their schemas,
# so they work with Hydra's (deprecated) matching against the schema and without it
warnings.filterwarnings(
    "ignore", message=r"(?s).*'hydra/launcher/\w+' is validated against ConfigStore schema"
)

# (config group, option) -> the Hydra plugin module of the `sweep` extra that provides it;
# option None: every option of the group (all `hparams_search` configs run Optuna)
SWEEP_PLUGINS = {
    ("hparams_search", None): "hydra_plugins.hydra_optuna_sweeper",
    ("hydra/sweeper", "optuna"): "hydra_plugins.hydra_optuna_sweeper",
    ("hydra/launcher", "joblib"): "hydra_plugins.hydra_joblib_launcher",
    ("hydra/launcher", "submitit_local"): "hydra_plugins.hydra_submitit_launcher",
    ("hydra/launcher", "submitit_slurm"): "hydra_plugins.hydra_submitit_launcher",
}


class MissingSweepExtraError(UserInputError):
    """A sweeper or launcher was selected whose plugin (the ``sweep`` extra) is not installed."""


class SweepJobError(CompactHydraException):
    """A job of a multirun failed on a user error. Unlike ``SystemExit`` (what a single run
    exits with), Hydra catches it: the job is recorded as failed (``JobReturn`` status
    FAILED, Optuna trial state FAIL) and the other jobs run. Hydra prints only its message."""


def plugin_installed(module: str) -> bool:
    """True when the Hydra plugin ``module`` (e.g. ``hydra_plugins.hydra_joblib_launcher``)
    can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def selected_groups(overrides: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(group, option, override)`` for each command-line override that picks an option
    of a config group served by the sweep plugins, e.g. ``hydra/launcher=joblib``."""
    groups = {group for group, _ in SWEEP_PLUGINS}
    found = []
    for override in overrides:
        key, sep, option = override.lstrip("+~").partition("=")
        if sep and key in groups and option not in ("", "null"):
            found.append((key, option, override))
    return found


def check_sweep_plugins(overrides: Iterable[str]) -> None:
    """Fail with one line naming the override and the install command when it selects a
    sweeper or launcher whose plugin is missing (Hydra would fail with a long traceback).

    Raises:
        MissingSweepExtraError: e.g. ``hydra/launcher=joblib needs the Hydra plugin
            hydra_plugins.hydra_joblib_launcher, which is not installed: pip install ...``.
    """
    for group, option, override in selected_groups(overrides):
        module = SWEEP_PLUGINS.get((group, option)) or SWEEP_PLUGINS.get((group, None))
        if module is not None and not plugin_installed(module):
            raise MissingSweepExtraError(
                f"{override} needs the Hydra plugin {module}, which is not installed: "
                f"{SWEEP_EXTRA_HINT}"
            )


def require_sweep_plugins(argv: Sequence[str] | None = None) -> None:
    """:func:`check_sweep_plugins` on the command line; a missing plugin prints one
    ``error:`` line and exits with status 2, before Hydra starts."""
    try:
        check_sweep_plugins(sys.argv[1:] if argv is None else argv)
    except MissingSweepExtraError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


class ValidationHistory(Callback):
    """Records the value of one logged metric after every validation epoch (sanity checks
    left out), so that a run can report its best, not its last, value."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.values: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        self.values.append(float(trainer.callback_metrics[self.metric]))


def best_of(values: Sequence[float], mode: str) -> float:
    """The best of ``values`` (``mode`` ``max`` or ``min``), NaN values ignored; NaN when
    every value is NaN."""
    if mode not in ("max", "min"):
        raise ConfigValueError(f"optimized_mode: expected 'max' or 'min', got {mode!r}")
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan
    return max(finite) if mode == "max" else min(finite)


def optimized_value(
    metric: str,
    mode: str,
    checkpoints: Sequence[Callback],
    history: Sequence[float],
    logged: Iterable[str] = (),
) -> float:
    """The value a sweeper optimises: the best ``metric`` of the run.

    A :class:`ModelCheckpoint` among ``checkpoints`` that monitors ``metric`` holds the
    score of the checkpoint that is tested (``best_model_score``); without one, the best of
    ``history`` (one value per validation epoch) by ``mode``.

    Raises:
        ConfigValueError: ``metric`` was never logged (``logged`` lists what was).
    """
    for callback in checkpoints:
        if (
            isinstance(callback, ModelCheckpoint)
            and callback.monitor == metric
            and callback.best_model_score is not None
        ):
            return float(callback.best_model_score)
    if not history:
        names = ", ".join(sorted(logged)) or "none"
        raise ConfigValueError(
            f"optimized_metric={metric} was never logged by a validation epoch "
            f"(logged metrics: {names})"
        )
    return best_of(history, mode)
