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
    check_run_config,
    check_writable,
    run_dir,
    user_errors,
    write_test_metrics,
    write_test_results,
    writing,
)
from asl_tal.checkpoints import check_resume_checkpoint, local_checkpoint_path, read_checkpoint
from asl_tal.conf import CONFIG_PATH
from asl_tal.data.datamodules import TALDataModule
from asl_tal.errors import UserInputError
from asl_tal.lit_module import ASLLitModule
from asl_tal.objective.settings import check_model_config
from asl_tal.outputs import remove_stale_temporaries, run_folder_lock
from asl_tal.run_log import closing_summary
from asl_tal.sweeps import ValidationHistory, optimized_value, require_sweep_plugins
from asl_tal.tracking import wandb_run

log = logging.getLogger("asl_tal.train")

TEST_WEIGHTS = ("auto", "best", "last")


def check_epochs(max_epochs: int | None, warmup_epochs: int, epochs: int) -> None:
    """Refuse a ``trainer.max_epochs`` other than the learning-rate schedule's length
    (``scheduler.warmup_epochs + scheduler.epochs``, which trainer.max_epochs follows): a
    shorter run would stop the schedule part-way, a longer one train on at its floor."""
    if max_epochs == warmup_epochs + epochs:
        return
    how = "scheduler.warmup_epochs=W scheduler.epochs=E"
    if isinstance(max_epochs, int) and max_epochs > 0:
        # keep the warm-up where it fits, else split the epochs asked for
        warmup = warmup_epochs if max_epochs > warmup_epochs else max_epochs // 2
        how = f"scheduler.warmup_epochs={warmup} scheduler.epochs={max_epochs - warmup}"
    raise UserInputError(
        f"trainer.max_epochs={max_epochs} does not match the learning-rate schedule "
        f"(scheduler.warmup_epochs={warmup_epochs} + scheduler.epochs={epochs}); set the "
        f"run's length with the schedule instead, e.g. {how} (trainer.max_epochs follows it)"
    )


def train(cfg: DictConfig) -> float | None:
    """Fit on the training subset, validate every epoch, then test (:func:`test_after_fit`):
    the best checkpoint where it was selected on videos that are not test videos, else the
    last epoch's weights.

    Before any work: the config's values must be in range (:func:`check_run_config`), a
    ``ckpt_path`` to resume from must be a readable local checkpoint (never a URL), and the
    run directory must not hold checkpoints of another run nor be in use by another command
    (its lock, held by rank 0 until the end). Before training: the validation (and, with
    ``test_after_fit``, the test) subset must hold ground truth. Every checkpoint is loaded
    with ``weights_only=True``. Resuming from ``<run>/checkpoints/last.ckpt`` goes on in
    ``<run>`` (``conf/hydra/default.yaml``), the best checkpoint's score included.

    Returns, when ``cfg.optimized_metric`` is set (hyper-parameter sweeps), the run's best
    value of it: the score of the best checkpoint when a checkpoint callback monitors it,
    else the best validation epoch's by ``cfg.optimized_mode``.
    """
    check_run_config(cfg, training=True)
    check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    check_epochs(cfg.trainer.max_epochs, cfg.scheduler.warmup_epochs, cfg.scheduler.epochs)
    if cfg.test_weights not in TEST_WEIGHTS:
        raise UserInputError(
            f"test_weights={cfg.test_weights}: expected one of {', '.join(TEST_WEIGHTS)}"
        )
    resume = cfg.ckpt_path or None
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
    if cfg.test_after_fit:
        datamodule.check_ground_truth("test")
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    if resume is not None:
        check_resume_checkpoint(resume, resume_ckpt, module, datamodule)
        del resume_ckpt  # Lightning reads the file again (weights only) in fit
    class_map_file = directory / "class_map.json"
    with writing(class_map_file):
        datamodule.class_map.save(class_map_file)

    trainer = build_trainer(cfg)
    metric = cfg.optimized_metric
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
                cfg.optimized_mode,
                trainer.checkpoint_callbacks,
                history.values,
                logged=trainer.callback_metrics,
            )

        tested = None
        if cfg.test_after_fit and not trainer.fast_dev_run:
            tested = test_after_fit(cfg, trainer, module, datamodule, directory)
    if trainer.is_global_zero:  # after the W&B run's closing output: the run's last line
        log.info("%s", closing_summary(trainer, directory, tested))
    return value


def test_after_fit(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: ASLLitModule,
    datamodule: TALDataModule,
    directory: Path,
) -> str:
    """Test the weights that :func:`choose_test_weights` picks into ``results/test_*``;
    returns which (``best`` | ``last``).

    When those are the best checkpoint and ``cfg.also_test_last`` is set, the last epoch's
    weights (still in ``module``) are tested first, into ``results/test_last_metrics.json``,
    so a run reports both the selected and the last-epoch test mAP.
    """
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    weights, reason = choose_test_weights(cfg.test_weights, best, datamodule)
    if weights == "best" and cfg.also_test_last:
        log.info("testing the last epoch's weights")
        trainer.test(module, datamodule=datamodule, weights_only=True)
        write_test_metrics(trainer, module, directory, "test_last", "last")
    log.info("testing %s: %s", best if weights == "best" else "the last epoch's weights", reason)
    trainer.test(
        module,
        datamodule=datamodule,
        ckpt_path=best if weights == "best" else None,
        weights_only=True,
    )
    write_test_results(trainer, module, datamodule, directory, "test", weights)
    return weights


def choose_test_weights(setting: str, best: str, datamodule: TALDataModule) -> tuple[str, str]:
    """``("best" | "last", why)``: the weights to test for ``cfg.test_weights``.

    ``auto`` tests the best checkpoint only when it was selected on videos that are not
    test videos (a ``val_subset`` apart from the test subset, or ``dataset.val_holdout``);
    where the validation videos are test videos it tests the last epoch, since a checkpoint
    picked on them is picked on the test set. ``best`` and ``last`` are taken as they are
    (``best`` without a best checkpoint falls back to the last epoch).
    """
    if not best:
        return "last", "no best checkpoint was kept"
    if setting in ("best", "last"):
        return setting, f"test_weights={setting}"
    shared = set(datamodule.annotations("val")) & set(datamodule.annotations("test"))
    if not shared:
        return "best", "selected on validation videos that are not test videos"
    return "last", (
        f"{len(shared)} validation video(s) are test videos, so a checkpoint picked on them "
        "would be picked on the test set (dataset.val_holdout=0.2 selects on held-out "
        "training videos instead)"
    )


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
