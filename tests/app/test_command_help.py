"""``--help`` of the commands: eval and predict lead with their own keys, required keys read
``???``, the dataset choices are datasets, asl-evaluate's help is plain text, ``python -m
asl_tal.train`` is asl-train."""

from __future__ import annotations

import runpy
import sys

import pytest

from asl_tal.cli import eval as eval_entry
from asl_tal.cli import predict as predict_entry
from asl_tal.cli.score import main as evaluate_main

DATASETS = (
    "anet_i3d, anet_tsp, charades, custom, ego4d_mq, epic_noun, epic_verb, multithumos, "
    "synthetic, thumos14"
)


def help_text(entry, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["asl", "--help"])
    with pytest.raises(SystemExit) as info:
        entry.main()
    assert info.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("entry", "own_keys"),
    [
        (eval_entry, ["ckpt_path: ???", "output_format:", "retrieval_top_k:", "plot:"]),
        (
            predict_entry,
            ["ckpt_path: ???", "input: ???", "output:", "output_format:", "plot:", "fps:"],
        ),
    ],
)
def test_help_leads_with_the_commands_own_keys(entry, own_keys, monkeypatch, capsys):
    text = help_text(entry, monkeypatch, capsys)
    lines = text.splitlines()
    name = "asl-eval" if entry is eval_entry else "asl-predict"
    assert lines[0].startswith(f"{name}: ")
    groups = lines.index("== Configuration groups ==")
    first_section = "\n".join(lines[:groups])
    for key in own_keys:
        assert f"\n{key}" in first_section, key
    # the full config further down agrees: the checkpoint is required there too
    assert "\nckpt_path: ???\n" in "\n".join(lines[groups:]) + "\n"
    assert f"dataset: {DATASETS}" in lines


def test_asl_evaluate_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as info:
        evaluate_main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: asl-evaluate ")
    assert "fractions in [0, 1]" in out
    for markup in ("``", ":class:", ":mod:", ":func:", "docs/"):
        assert markup not in out, markup


def test_python_m_asl_tal_train_runs_the_train_command(monkeypatch, capsys):
    # Hydra names the job after the module that holds the task function: still "train" (the
    # help's app name here, the run's train.log)
    monkeypatch.setattr(sys, "argv", ["asl_tal.train", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("asl_tal.train", run_name="__main__")
    assert info.value.code in (0, None)
    assert capsys.readouterr().out.startswith("train is powered by Hydra.")
