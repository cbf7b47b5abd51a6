"""``ExportedDetector`` loads only what ``asl-export`` writes: a ``.pt2`` whose archive asks
torch to unpickle a weight, a constant or its example inputs, or whose program carries
Python in a guard or calls a function outside the tensor ops (each would run code from the
file), is refused before anything in it is read by torch.

Each crafted archive starts from a real small export (:func:`write_artifact` of an untrained
tiny detector); the slow tests show the payloads run under a bare ``torch.export.load``.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from helpers.model_defaults import model_config, postprocess_config

from asl_tal.cli.user_errors import user_errors
from asl_tal.deployment import (
    ExportedDetector,
    artifact_metadata,
    export_detector,
    write_artifact,
)
from asl_tal.detector import ASLDetector

CLASSES = ["jump", "run"]
# 8-wide features, one down-sampling block -> required multiple 2
TINY = {"input_dim": 8, "d_emb": 16, "n_heads": 2, "head_width": 16, "l1": 1, "l2": 0, "l3": 1}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    detector = ASLDetector.from_config(model_config(network=TINY), len(CLASSES)).eval()
    cfg = postprocess_config()
    program = export_detector(detector, cfg, max_length=64)
    path = tmp_path_factory.mktemp("export") / "model.pt2"
    write_artifact(program, artifact_metadata(detector, cfg, CLASSES, "demo.ckpt", 64), path)
    return path


class Payload:
    """Unpickling it writes ``marker``: what a crafted file could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "payload ran"))


def torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def rewrite(src: Path, dst: Path, change) -> None:
    """Copy the archive ``src`` to ``dst``; ``change(entries)`` edits the dict entry (the
    name below the archive's top folder) -> bytes first."""
    with zipfile.ZipFile(src) as archive:
        names = archive.namelist()
        root = names[0].split("/", 1)[0]
        entries = {n.split("/", 1)[1]: archive.read(n) for n in names}
    change(entries)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as archive:
        for entry, data in entries.items():
            archive.writestr(f"{root}/{entry}", data)


def pickled_weight(marker: Path):
    def change(entries):
        name = "data/weights/model_weights_config.json"
        config = json.loads(entries[name])
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        entries[name] = json.dumps(config).encode()
        entries[f"data/weights/{first['path_name']}"] = torch_saved(Payload(marker))

    return change


def pickled_constant(marker: Path):
    def change(entries):
        name = "data/constants/model_constants_config.json"
        config = json.loads(entries[name])
        first = next(iter(config["config"].values()))
        first["path_name"] = "opaque_obj_0"
        entries[name] = json.dumps(config).encode()
        payload = pickle.dumps(Payload(marker))
        # torch sizes every use_pickle: false record as raw tensor bytes first
        entries["data/constants/opaque_obj_0"] = payload + b"." * (-len(payload) % 8)

    return change


def pickled_examples(marker: Path):
    def change(entries):
        entries["data/sample_inputs/model.pt"] = torch_saved(Payload(marker))

    return change


def guard_code(marker: Path):
    """An input guard (Python that the loaded program runs on every call) with a payload."""

    def change(entries):
        program = json.loads(entries["models/model.json"])
        program["guards_code"].append(f"__import__('pathlib').Path('{marker}').write_text('x')")
        entries["models/model.json"] = json.dumps(program).encode()

    return change


def foreign_call(marker: Path):
    """A node that calls a function reachable from the torch module (``torch.os``)."""

    def change(entries):
        program = json.loads(entries["models/model.json"])
        program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"
        entries["models/model.json"] = json.dumps(program).encode()

    return change


# what torch unpickles while loading: the payload runs in torch.export.load itself
UNPICKLED = {
    "a weight marked use_pickle": (pickled_weight, "asks to unpickle"),
    "an opaque-object constant": (pickled_constant, "opaque_obj_0.*never writes"),
    "example inputs that are not tensors": (pickled_examples, "example inputs hold more"),
}
CRAFTS = {
    **UNPICKLED,
    "a guard with code": (guard_code, 'holds the expression "__import__'),
    "a node calling torch.os.system": (foreign_call, "calls 'torch.os.system'"),
}


def test_our_own_export_loads(artifact):
    model = ExportedDetector(artifact)
    assert model.class_names == CLASSES
    assert model.metadata["required_multiple"] == 2  # 2**l3


# a bare torch.export.load costs seconds per archive: in the slow step
@pytest.mark.slow
@pytest.mark.parametrize("case", list(UNPICKLED))
def test_a_crafted_archive_runs_its_payload_under_a_bare_torch_load(artifact, tmp_path, case):
    """The crafted files are live: torch.export.load itself runs the payload."""
    craft, _ = UNPICKLED[case]
    marker, crafted = tmp_path / "marker", tmp_path / "crafted.pt2"
    rewrite(artifact, crafted, craft(marker))
    # torch may fail after the payload ran (the object is no tensor) or load it as it is
    with contextlib.suppress(Exception):
        torch.export.load(crafted)
    assert marker.read_text() == "payload ran"


@pytest.mark.slow
def test_a_crafted_guard_runs_when_the_bare_program_is_called(artifact, tmp_path):
    marker, crafted = tmp_path / "marker", tmp_path / "crafted.pt2"
    rewrite(artifact, crafted, guard_code(marker))
    program = torch.export.load(crafted).module()
    assert not marker.exists()
    feats, mask = torch.zeros(2, TINY["input_dim"], 4), torch.ones(2, 4, dtype=torch.bool)
    with contextlib.suppress(Exception):  # the guard returns no bool: torch._assert fails
        program(feats, mask, torch.ones(2), torch.ones(2), torch.ones(2))
    assert marker.read_text() == "x"


@pytest.mark.parametrize("case", list(CRAFTS))
def test_a_crafted_archive_is_refused_before_its_payload_runs(artifact, tmp_path, case):
    craft, words = CRAFTS[case]
    marker, crafted = tmp_path / "marker", tmp_path / "crafted.pt2"
    rewrite(artifact, crafted, craft(marker))
    with pytest.raises(ValueError, match=words) as err:
        ExportedDetector(crafted)
    assert str(err.value).startswith(f"{crafted}: not loaded: ")
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_an_entry_asl_export_never_writes_is_refused(artifact, tmp_path, capsys):
    """Compiled code (AOTInductor) in the archive: one error line, exit status 2, when an
    entry point loads it (``user_errors``)."""
    crafted = tmp_path / "crafted.pt2"

    def change(entries):
        entries["data/aotinductor/model/model.so"] = b"\x7fELF"

    rewrite(artifact, crafted, change)
    with pytest.raises(SystemExit) as exit_info, user_errors():
        ExportedDetector(crafted)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {crafted}: not loaded: it holds "
        "'archive/data/aotinductor/model/model.so', which asl-export never writes; "
        "ExportedDetector loads only what asl-export writes (export the checkpoint again "
        "with asl-export)"
    ]
