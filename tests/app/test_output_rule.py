"""One rule for every command's output: it never replaces one of the command's inputs (links
included) nor an existing file the command did not write. Each refusal is one ``error:``
line with exit status 2, and every file is left byte for byte as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.runs import fingerprint, one_error_line

from asl_tal.cli import convert, export, publish, score
from asl_tal.outputs import OutputError, check_output

CONF = Path(__file__).resolve().parents[2] / "conf"


def files_of(folder: Path) -> dict[Path, tuple[int, str]]:
    return {p: fingerprint(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_rule_itself(tmp_path):
    source = tmp_path / "in.json"
    source.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(source)
    check_output(tmp_path / "new.json", "--out", [("the input", source)])  # not there yet
    with pytest.raises(OutputError, match="is the input; choose another path"):
        check_output(link, "--out", [("the input", source)])
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path, "--out", [])
    with pytest.raises(OutputError, match="exists; refusing to overwrite it"):
        check_output(source, "--out", [])
    check_output(source, "--out", [], ours=lambda p: True, kind="ours")
    with pytest.raises(OutputError, match="exists and is not ours; refusing"):
        check_output(source, "--out", [], ours=lambda p: False, kind="ours")


@pytest.mark.parametrize("target", ["checkpoint", "link", "notes"])
def test_export_never_writes_over_its_checkpoint_or_another_file(capsys, tmp_path, target):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"a checkpoint's bytes")
    (tmp_path / "link.ckpt").symlink_to(ckpt)
    (tmp_path / "notes.pt2").write_text("my notes")
    out = {"checkpoint": ckpt, "link": tmp_path / "link.ckpt", "notes": tmp_path / "notes.pt2"}
    before = files_of(tmp_path)
    with pytest.raises(SystemExit) as done:
        export.main([str(ckpt), "--out", str(out[target])])
    assert done.value.code == 2
    words = ("the checkpoint being exported",) if target != "notes" else ("asl-export artifact",)
    one_error_line(capsys.readouterr().err, f"--out {out[target]}", *words)
    assert files_of(tmp_path) == before


def test_the_scorer_never_writes_over_its_inputs_or_another_file(capsys, tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"version": "x", "database": {}}))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"version": "x", "results": {}, "external_data": {}}))
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"average_mAP": "my own note"}))
    before = files_of(tmp_path)
    cases = [(gt, "the --gt file"), (pred, "the --pred file"), (notes, "not a metrics file")]
    for out, words in cases:
        assert score.cli(["--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 2
        one_error_line(capsys.readouterr().err, f"--out {out}", words)
    assert files_of(tmp_path) == before


def test_the_scorer_replaces_its_own_metrics_file(tmp_path):
    out = tmp_path / "metrics.json"
    out.write_text(
        json.dumps({"tiou": [0.5], "mAP": [0.1], "average_mAP": 0.1, "per_class_AP": {}})
    )
    assert score.is_metrics_file(out)
    check_output(out, "--out", [], ours=score.is_metrics_file, kind="a metrics file")


def test_convert_never_writes_over_an_input_csv(capsys, tmp_path):
    train = tmp_path / "Charades_v1_train.csv"
    train.write_text("id,actions,length\n46GP8,,24.8\n")
    test = tmp_path / "Charades_v1_test.csv"
    test.write_text("id,actions,length\nYSKX3,,12.0\n")
    classes = tmp_path / "Charades_v1_classes.txt"
    classes.write_text("c000 Holding some clothes\n")
    existing = tmp_path / "annotations.json"
    existing.write_text('{"database": {}}')
    before = files_of(tmp_path)
    cases = [(train, "the input --train"), (test, "the input --test"), (existing, "exists;")]
    for out, words in cases:
        inputs = ["--train", str(train), "--test", str(test), "--classes", str(classes)]
        assert convert.main(["charades", *inputs, "--out", str(out)]) == 2
        one_error_line(capsys.readouterr().err, f"--out {out}", words)
    assert files_of(tmp_path) == before


def test_actionformer_config_replaces_only_a_config_it_wrote(capsys, tmp_path):
    af_config = tmp_path / "thumos_i3d.yaml"
    af_config.write_text(
        "dataset_name: thumos\ndataset: {num_classes: 20, input_dim: 2048, feat_stride: 4}\n"
    )
    shipped = tmp_path / "conf" / "dataset" / "thumos14.yaml"
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes((CONF / "dataset" / "thumos14.yaml").read_bytes())
    before = fingerprint(shipped)
    assert convert.main(["actionformer-config", str(af_config), "--out", str(shipped)]) == 2
    one_error_line(capsys.readouterr().err, f"--out {shipped}", "not a config it translated")
    assert fingerprint(shipped) == before

    ours = tmp_path / "conf" / "dataset" / "thumos_af.yaml"
    for _ in range(2):  # a rerun replaces the config it wrote
        assert convert.main(["actionformer-config", str(af_config), "--out", str(ours)]) == 0
    assert ours.read_text().startswith("# @package _global_\n# Translated from")


def test_publish_never_writes_over_another_file(capsys, tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"a checkpoint's bytes")
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint")
    before = files_of(tmp_path)
    with pytest.raises(SystemExit) as done:
        publish.main([str(ckpt), "--out", str(notes)])
    assert done.value.code == 2
    one_error_line(capsys.readouterr().err, f"--out {notes}", "asl-publish wrote")
    assert files_of(tmp_path) == before
