"""Evaluate a checkpoint: ``python -m asl_tal.eval ckpt_path=... [dataset=...]``.

The architecture comes from the checkpoint; post-processing and the evaluation protocol from
the current config, so NMS settings can be tuned without retraining. Writes
``results/test_metrics.json`` and ``results/test_detections.json`` into the run directory;
``output_format=ego4d`` also an Ego4D Moment Queries submission
(``results/test_ego4d_submission.json``), ``output_format=actionformer`` ActionFormer's
pickle (``results/test_eval_results.pkl``); see :mod:`asl_tal.submission`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from asl_tal.app import (
    build_datamodule,
    build_trainer,
    prepare_results_dir,
    run_dir,
    user_errors,
    write_test_results,
    writing,
)
from asl_tal.checkpoints import check_trained_on, load_checkpoint, local_checkpoint_path
from asl_tal.conf import CONFIG_PATH
from asl_tal.outputs import results_folder
from asl_tal.submission import DEFAULT_RETRIEVAL_TOP_K, check_output_format, write_results
from asl_tal.tracking import wandb_run

# the file output_format adds to results/ (activitynet: test_detections.json only)
EXTRA_OUTPUT_NAMES = {
    "ego4d": "test_ego4d_submission.json",
    "actionformer": "test_eval_results.pkl",
}


def evaluate(cfg: DictConfig) -> dict:
    """Test ``cfg.ckpt_path`` on the dataset's test subset; returns the logged metrics.

    ``ckpt_path`` is required (a local file) and the run directory must be writable: both
    are checked before any work."""
    # `ckpt_path: ???` of eval.yaml does not survive the merge onto train.yaml's null
    local_checkpoint_path(cfg.get("ckpt_path"))
    output_format = cfg.get("output_format", "activitynet")
    retrieval_top_k = cfg.get("retrieval_top_k", DEFAULT_RETRIEVAL_TOP_K)
    check_output_format(output_format, retrieval_top_k)
    directory = run_dir()
    prepare_results_dir(directory)
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
        detections = write_test_results(trainer, module, datamodule, directory, "test")
        if detections is not None and output_format in EXTRA_OUTPUT_NAMES:
            path = directory / "results" / EXTRA_OUTPUT_NAMES[output_format]
            with writing(path):
                write_results(
                    path, detections, datamodule.class_map, output_format, retrieval_top_k
                )
    return {key: float(value) for key, value in trainer.callback_metrics.items()}


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors(), results_folder(run_dir(), "eval"):
        evaluate(cfg)


if __name__ == "__main__":
    main()
