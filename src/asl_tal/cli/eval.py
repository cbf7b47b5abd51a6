"""Evaluate a checkpoint: ``asl-eval ckpt_path=RUN/checkpoints/best.ckpt``.

The architecture, the dataset block (paths, feature width, classes, time grid, subsets), the
post-processing and the evaluation protocol come from the checkpoint, so nothing else needs
to be given; a key on the command line still wins (``dataset.test_subset=[validation]``,
``postprocess.iou_threshold=0.2``; ``dataset=<name>`` takes that config file's block, see
:func:`asl_tal.checkpoints.with_checkpoint_settings`). Writes ``results/test_metrics.json``
and ``results/test_detections.json`` into the run directory; ``output_format=ego4d`` also an
Ego4D Moment Queries submission (``results/test_ego4d_submission.json``),
``output_format=actionformer`` ActionFormer's pickle (``results/test_eval_results.pkl``); see
:mod:`asl_tal.submission`. ``plot=true`` draws each test video's ground truth against its top
detections as ``<plot_dir>/<video_id>.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from asl_tal.app import (
    build_datamodule,
    build_trainer,
    check_run_config,
    command_line_overrides,
    prepare_results_dir,
    run_dir,
    user_errors,
    write_test_results,
    writing,
)
from asl_tal.checkpoints import (
    check_trained_on,
    checkpoint_hparams,
    load_checkpoint,
    local_checkpoint_path,
    with_checkpoint_settings,
)
from asl_tal.conf import CONFIG_PATH
from asl_tal.data.datamodules import TALDataModule
from asl_tal.outputs import results_folder
from asl_tal.submission import check_output_format, write_results
from asl_tal.tracking import wandb_run
from asl_tal.viz import check_plot_top_k, plot_timeline, write_plots

# the file output_format adds to results/ (activitynet: test_detections.json only)
EXTRA_OUTPUT_NAMES = {
    "ego4d": "test_ego4d_submission.json",
    "actionformer": "test_eval_results.pkl",
}

log = logging.getLogger("asl_tal.eval")


def evaluate(cfg: DictConfig) -> dict:
    """Test ``cfg.ckpt_path`` on the test subset of its dataset; returns the logged metrics.

    ``ckpt_path`` is required (a local file), the config's values must be in range and the
    run directory must be writable: all are checked before any work. The checkpoint's
    dataset, post-processing and evaluation blocks replace the config files' unless the
    command line gives them."""
    check_run_config(cfg, training=False)
    local_checkpoint_path(cfg.get("ckpt_path"))
    output_format, retrieval_top_k = cfg.output_format, cfg.retrieval_top_k
    check_output_format(output_format, retrieval_top_k)
    if cfg.plot:
        check_plot_top_k(cfg.plot_top_k)
    directory = run_dir()
    prepare_results_dir(directory)
    hparams = checkpoint_hparams(cfg.ckpt_path)
    cfg = with_checkpoint_settings(cfg, hparams, command_line_overrides())
    log.info(
        "dataset %s at %s, test subset %s",
        cfg.dataset.name,
        cfg.dataset.root,
        cfg.dataset.test_subset,
    )
    module = load_checkpoint(
        cfg.ckpt_path,
        postprocess=OmegaConf.to_container(cfg.postprocess, resolve=True),
        evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),
    )
    datamodule = build_datamodule(cfg, l3=module.detector.network.l3)
    datamodule.prepare_data()
    datamodule.setup("test")
    check_trained_on(
        module.hparams, cfg.ckpt_path, list(datamodule.class_map.names), datamodule.cfg.input_dim
    )
    trainer = build_trainer(cfg, callbacks=False)
    with wandb_run(trainer, directory):  # one W&B run per job, also in a multirun
        trainer.test(module, datamodule=datamodule, weights_only=True)
        detections = write_test_results(
            trainer, module, datamodule, directory, "test", str(cfg.ckpt_path)
        )
        if detections is not None and output_format in EXTRA_OUTPUT_NAMES:
            path = directory / "results" / EXTRA_OUTPUT_NAMES[output_format]
            with writing(path):
                write_results(
                    path, detections, datamodule.class_map, output_format, retrieval_top_k
                )
        if detections is not None and cfg.plot:
            plot_test_videos(cfg, datamodule, module.class_names, detections, directory)
    return {key: float(value) for key, value in trainer.callback_metrics.items()}


def plot_test_videos(
    cfg: DictConfig,
    datamodule: TALDataModule,
    class_names: list[str],
    detections: dict,
    directory: Path,
) -> None:
    """One :func:`~asl_tal.viz.plot_timeline` PNG per test video (ground truth against the
    ``plot_top_k`` best detections) under ``plot_dir`` (default ``<run dir>/plots``); a plot
    that cannot be written is a warning (:func:`~asl_tal.viz.write_plots`)."""
    gt = datamodule.annotations("test")
    plot_dir = Path(cfg.plot_dir) if cfg.plot_dir else directory / "plots"
    written, failures = write_plots(
        plot_dir,
        list(detections),
        lambda video_id: plot_timeline(
            gt[video_id], detections[video_id], class_names, cfg.plot_top_k
        ),
    )
    log.info(
        "%d timeline plots written to %s (%d not written)", len(written), plot_dir, len(failures)
    )


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors(), results_folder(run_dir(), "eval"):
        evaluate(cfg)


if __name__ == "__main__":
    main()
