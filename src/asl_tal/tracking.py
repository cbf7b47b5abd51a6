"""The W&B run of one job: its settings (name, group, job type, offline mode), the metrics its
summary keeps, what it uploads at the end, and finishing it.

W&B keeps one current run per process, and a multirun executes its jobs one after another
in one process (Hydra's basic launcher): a job that left its run open would make the next
job's ``WandbLogger`` write into it. :func:`wandb_run` finishes each job's run, whether the
job succeeded or failed, so every job gets a run of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import netrc
import os
from collections.abc import Iterator
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import get_class
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

log = logging.getLogger("asl_tal.tracking")

# overrides that say where files and logs go, not what is trained: left out of run names
# (so are the keys of Hydra's hydra.job.config.override_dirname.exclude_keys)
NAME_EXCLUDED_KEYS = ("paths", "logger", "hydra", "ckpt_path", "input", "output")
# the validation metric whose best value (not its last) the run summary keeps
BEST_METRIC = "val/average_mAP"
# WANDB_MODE values under which nothing is uploaded
OFFLINE_MODES = ("offline", "dryrun", "disabled")


def wandb_api_key_available() -> bool:
    """True when W&B can log online: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def is_wandb_logger(logger_cfg: dict) -> bool:
    """True when the logger config ``logger_cfg`` builds a ``WandbLogger`` (or a subclass)."""
    target = logger_cfg.get("_target_")
    if not isinstance(target, str):
        return False
    try:
        cls = get_class(target)
    except ImportError:  # instantiate names the bad target later
        return False
    return isinstance(cls, type) and issubclass(cls, WandbLogger)


def job_overrides() -> list[str]:
    """The command-line overrides of this Hydra job that name what it trains, sorted (Hydra's
    ``override_dirname`` order); empty outside Hydra."""
    if not HydraConfig.initialized():
        return []
    hydra_cfg = HydraConfig.get()
    excluded = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    lines = []
    for override in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)):
        key = override.key_or_group
        if key in excluded or any(key == k or key.startswith(f"{k}.") for k in NAME_EXCLUDED_KEYS):
            continue
        lines.append(override.input_line)
    return sorted(lines)


def run_name(cfg: DictConfig) -> str:
    """``model.l1=2,model.l2=3`` from the job's overrides; ``<task>-<dataset>`` without any."""
    return ",".join(job_overrides()) or f"{cfg.task_name}-{cfg.dataset.name}"


def run_group(cfg: DictConfig) -> str:
    """The sweep this job belongs to: the Optuna study's name when one is set (workers that
    share a study share a group), else the name of the multirun's sweep directory; the
    dataset's name for a single run."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra_cfg = HydraConfig.get()
        study = hydra_cfg.sweeper.get("study_name")
        return str(study) if study else Path(hydra_cfg.sweep.dir).name
    return str(cfg.dataset.name)


def wandb_logger_config(logger_cfg: dict, cfg: DictConfig) -> dict:
    """``logger_cfg`` (a resolved ``WandbLogger`` config) made ready to instantiate.

    ``offline: auto`` becomes offline without an API key; ``name`` / ``group`` left null
    become :func:`run_name` / :func:`run_group`. Checkpoints cannot be uploaded offline: there
    ``log_model`` is turned off with a warning saying why (Lightning would raise)."""
    out = dict(logger_cfg)
    offline_reason = "offline: true"
    if out.get("offline") == "auto":
        out["offline"] = not wandb_api_key_available()
        offline_reason = "no API key"
        if out["offline"]:
            log.info("W&B: no API key, logging offline (upload later with `wandb sync`)")
    if out.get("name") is None:
        out["name"] = run_name(cfg)
    if out.get("group") is None:
        out["group"] = run_group(cfg)
    mode = os.environ.get("WANDB_MODE", "").lower()
    if out.get("log_model") and (out.get("offline") or mode in OFFLINE_MODES):
        why = offline_reason if out.get("offline") else f"WANDB_MODE={mode}"
        log.warning(
            "W&B is offline (%s): log_model=%s skipped, checkpoints are not uploaded as "
            "artifacts (they stay in the run directory); they upload when W&B logs online "
            "(WANDB_API_KEY or `wandb login`, WANDB_MODE not offline)",
            why,
            out["log_model"],
        )
        out["log_model"] = False
    return out


def file_stamps(directory: Path) -> dict[Path, tuple[int, int]]:
    """``{file: (mtime_ns, size)}`` of the files directly in ``directory`` (none: empty)."""
    if not directory.is_dir():
        return {}
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir() if p.is_file()}


def per_class_ap_table(metrics: dict) -> tuple[list[str], list[list]]:
    """Columns and rows of a per-class AP table from a ``results/<subset>_metrics.json``
    layout: ``class``, ``AP@<tIoU>`` per threshold, ``average AP`` (their mean). A class
    without an AP (no ground truth in the subset) has no row."""
    thresholds = metrics["tiou"]
    columns = ["class", *[f"AP@{t:g}" for t in thresholds], "average AP"]
    rows = [
        [name, *values, sum(values) / len(values)]
        for name, values in metrics["per_class_AP"].items()
        if values and all(v is not None for v in values)
    ]
    return columns, rows


def log_results(run, results_dir: Path, written: list[Path]) -> None:
    """Log the files of ``results_dir`` that this job wrote (``written``) to the W&B ``run``:
    a per-class AP table ``<subset>/per_class_AP`` for each ``<subset>_metrics.json``, and
    (online only) the files as one ``results`` artifact."""
    import wandb

    for path in written:
        if path.name.endswith("_metrics.json"):
            subset = path.name.removesuffix("_metrics.json")
            columns, rows = per_class_ap_table(json.loads(path.read_text()))
            run.log({f"{subset}/per_class_AP": wandb.Table(columns=columns, data=rows)})
    if not written:
        return
    if run.offline:
        log.info("W&B offline: results files not uploaded as an artifact (in %s)", results_dir)
        return
    artifact = wandb.Artifact(name=f"results-{run.id}", type="results")
    for path in written:
        artifact.add_file(str(path), name=path.name)
    run.log_artifact(artifact)


@contextlib.contextmanager
def wandb_run(trainer: L.Trainer, directory: Path) -> Iterator[None]:
    """The W&B run of each ``WandbLogger`` of ``trainer`` for the duration of the block.

    On entry (rank 0) the run starts and its summary is told to keep the best (max)
    ``val/average_mAP``. When the block succeeds, the files it wrote into
    ``directory/results`` are logged (:func:`log_results`). In every case the runs are
    finished on the way out (exit code 1 when the block raised), so that the next job of a
    multirun starts a run of its own.
    """
    loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    runs = []
    succeeded = False
    try:
        for logger in loggers if rank_zero_only.rank == 0 else []:
            # Lightning hands wandb.init an `anonymous` argument (None unless set), which W&B
            # deprecates with a warning at every run; it has no effect either way
            logger._wandb_init.pop("anonymous", None)
            runs.append(logger.experiment)  # starts the run
            runs[-1].define_metric(BEST_METRIC, summary="max", step_metric="trainer/global_step")
        results_dir = directory / "results"
        before = file_stamps(results_dir)
        yield
        written = sorted(
            p for p, stamp in file_stamps(results_dir).items() if before.get(p) != stamp
        )
        for run in runs:
            log_results(run, results_dir, written)
        succeeded = True
    finally:
        for run in runs:
            run.finish(exit_code=0 if succeeded else 1)
