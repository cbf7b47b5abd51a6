"""Train, then test with the best checkpoint: ``python -m asl_tal.train [overrides]``.

Examples::

    python -m asl_tal.train                                  # synthetic benchmark
    python -m asl_tal.train dataset=epic_verb trainer=gpu
    python -m asl_tal.train experiment=thumos_asl_ascl
    python -m asl_tal.train -m model.l1=1,2 model.l2=1,2,3   # a sweep, one run dir per job
    python -m asl_tal.train ckpt_path=outputs/.../checkpoints/last.ckpt   # resume
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from asl_tal.app import (
    build_datamodule,
    build_module,
    build_trainer,
    check_fresh_run_dir,
    check_writable,
    run_dir,
    user_errors,
    write_test_results,
    writing,
)
from asl_tal.checkpoints import check_resume_checkpoint, local_checkpoint_path, read_checkpoint
from asl_tal.conf import CONFIG_PATH
from asl_tal.objective.settings import check_model_config
from asl_tal.outputs import remove_stale_temporaries, run_folder_lock
from asl_tal.sweeps import ValidationHistory, optimized_value, require_sweep_plugins
from asl_tal.tracking import wandb_run

log = logging.getLogger("asl_tal.train")


def train(cfg: DictConfig) -> float | None:
    """Fit on the training subset, validate every epoch, test the best checkpoint.

    Before any work: a ``ckpt_path`` to resume from must be a readable local checkpoint
    (never a URL), and the run directory must not hold checkpoints of another run nor be in
    use by another command (its lock, held by rank 0 until the end). Every checkpoint is
    loaded with ``weights_only=True``. Resuming from ``<run>/checkpoints/last.ckpt`` goes on
    in ``<run>`` (``conf/hydra/default.yaml``), the best checkpoint's score included.

    Returns, when ``cfg.optimized_metric`` is set (hyper-parameter sweeps), the run's best
    value of it: the score of the best checkpoint when a checkpoint callback monitors it,
    else the best validation epoch's by ``cfg.optimized_mode`` (``max`` unless set).
    """
    check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    resume = cfg.get("ckpt_path") or None
    resume = None if resume is None else local_checkpoint_path(resume).resolve()
    directory = run_dir()
    check_writable(directory)
    with run_folder_lock(directory):
        check_fresh_run_dir(directory, resume)
        remove_stale_temporaries(directory / "checkpoints")
        return fit_and_test(cfg, directory, resume)


def fit_and_test(cfg: DictConfig, directory: Path, resume: Path | None) -> float | None:
    """:func:`train` in the run folder ``directory``, resuming from ``resume`` (or not)."""
    # a truncated or foreign file fails now, not after the data is set up
    resume_ckpt = None if resume is None else read_checkpoint(resume)

    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    if resume is not None:
        check_resume_checkpoint(resume, resume_ckpt, module, datamodule)
        del resume_ckpt  # Lightning reads the file again (weights only) in fit
    class_map_file = directory / "class_map.json"
    with writing(class_map_file):
        datamodule.class_map.save(class_map_file)

    trainer = build_trainer(cfg)
    metric = cfg.get("optimized_metric")
    history = ValidationHistory(metric) if metric else None
    if history is not None:
        trainer.callbacks.append(history)
    # one W&B run per job, finished even when the job fails (a multirun's next job starts its own)
    with wandb_run(trainer, directory):
        for logger in trainer.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=None if resume is None else str(resume),
            weights_only=True,
        )
        value = None
        if history is not None:
            value = optimized_value(
                metric,
                cfg.get("optimized_mode", "max"),
                trainer.checkpoint_callbacks,
                history.values,
                logged=trainer.callback_metrics,
            )

        if cfg.get("test_after_fit", True) and not trainer.fast_dev_run:
            checkpoint = trainer.checkpoint_callback
            best = checkpoint.best_model_path if checkpoint is not None else ""
            log.info("testing %s", best or "the final weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            write_test_results(trainer, module, datamodule, directory, "test")
    return value


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    with user_errors():
        return train(cfg)


def main() -> None:
    """The command line: a sweeper or launcher of the ``sweep`` extra that is not installed
    is one ``error:`` line (exit status 2) before Hydra starts."""
    require_sweep_plugins()
    hydra_main()


if __name__ == "__main__":
    main()
