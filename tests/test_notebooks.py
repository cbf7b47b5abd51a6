"""The notebooks run top to bottom on the tiny config (nbclient, the venv's python3 kernel).

Data and outputs go under ``tmp_path`` through the environment variables the notebooks read;
the kernel's working directory is ``tmp_path`` too, so nothing lands in the repository.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow  # two kernels and two trainings: in .ci/run's slow step


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nb_data")


def execute(name: str, tmp_path: Path, data_dir: Path, monkeypatch) -> nbformat.NotebookNode:
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("ASL_TAL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ASL_TAL_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("ASL_TAL_OVERRIDES", "debug=tiny trainer.accelerator=cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("ASL_TAL_CHECKPOINT", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return notebook


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def images_of(notebook) -> int:
    return sum(
        "image/png" in o.get("data", {})
        for cell in code_cells(notebook)
        for o in cell.outputs
        if o.output_type in ("display_data", "execute_result")
    )


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_action_sensitivity.ipynb"])
def test_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None


def test_quickstart_runs(tmp_path, shared_data, monkeypatch):
    notebook = execute("01_quickstart.ipynb", tmp_path, shared_data, monkeypatch)
    out = tmp_path / "outputs" / "01_quickstart"
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (shared_data / "synthetic_tiny" / "annotations.json").is_file()
    printed = "".join(text_of(cell) for cell in code_cells(notebook))
    assert "test average mAP" in printed and "mAP@0.5" in printed
    assert images_of(notebook) == 3  # per-class AP, timeline, PR curves
    assert not list(tmp_path.glob("*.json")), "the notebook wrote into its working directory"


def test_action_sensitivity_runs(tmp_path, shared_data, monkeypatch):
    notebook = execute("02_action_sensitivity.ipynb", tmp_path, shared_data, monkeypatch)
    assert (tmp_path / "outputs" / "02_action_sensitivity" / "train" / "checkpoints").is_dir()
    printed = "".join(text_of(cell) for cell in code_cells(notebook))
    assert "with recorded phases" in printed
    for curve in ("p_cls", "q_cls", "h_cls", "p_loc", "q_loc", "h_loc"):
        assert f"\n{curve} " in printed
    assert images_of(notebook) == 2  # Figure a on two instances
