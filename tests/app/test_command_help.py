"""``--help`` of the commands: eval and predict lead with their own keys, required keys read
``???``, the dataset choices are datasets, asl-evaluate's help is plain text, ``python -m
asl_tal.train`` is asl-train."""

from __future__ import annotations

import pytest
from helpers.commands import run_command, run_module

DATASETS = (
    "anet_i3d, anet_tsp, charades, custom, ego4d_mq, epic_noun, epic_verb, multithumos, "
    "synthetic, thumos14"
)


def help_text(command: str) -> str:
    """What ``asl-<command> --help`` prints."""
    return run_command(command, "--help").stdout


@pytest.mark.parametrize(
    ("command", "own_keys"),
    [
        ("eval", ["ckpt_path: ???", "output_format:", "retrieval_top_k:", "plot:"]),
        (
            "predict",
            ["ckpt_path: ???", "input: ???", "output:", "output_format:", "plot:", "fps:"],
        ),
    ],
)
def test_help_leads_with_the_commands_own_keys(command, own_keys):
    lines = help_text(command).splitlines()
    assert lines[0].startswith(f"asl-{command}: ")
    groups = lines.index("== Configuration groups ==")
    first_section = "\n".join(lines[:groups])
    for key in own_keys:
        assert f"\n{key}" in first_section, key
    # the full config further down agrees: the checkpoint is required there too
    assert "\nckpt_path: ???\n" in "\n".join(lines[groups:]) + "\n"
    assert f"dataset: {DATASETS}" in lines


def test_asl_evaluate_help_is_plain_text():
    out = help_text("evaluate")
    assert out.startswith("usage: asl-evaluate ")
    assert "fractions in [0, 1]" in out
    for markup in ("``", ":class:", ":mod:", ":func:", "docs/"):
        assert markup not in out, markup


def test_python_m_asl_tal_train_runs_the_train_command():
    # Hydra names the job after the module that holds the task function: still "train" (the
    # help's app name here, the run's train.log)
    out = run_module("asl_tal.train", "--help").stdout
    assert out.startswith("train is powered by Hydra.")
