"""The package's imports run one way, along the data flow.

``data`` (formats, readers, batches) is at the bottom; ``models`` (the network only),
``postprocess``, ``metrics`` and ``interop`` (other formats → ours) stand on it side by
side; ``objective`` (assignment, sensitivity, the loss terms) on the network; ``detector``
on the objective and the post-processing; ``lit_module`` on the detector; the run services
(checkpoints, callbacks, plots, tracking) on it; the commands (``cli``: the console scripts
and what they share to build and run) on top. A module may import its
own package and any lower layer, never a layer at its own height in another package or
above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "asl_tal"

# top-level module or sub-package of asl_tal -> layer height
LAYERS = {
    "__init__": 0,
    "data": 0,
    # other formats -> ours (asl-convert): on data, used by no model or training code
    "interop": 1,
    "config_blocks": -1,
    "ema": 1,
    "models": 1,
    "postprocess": 1,
    "metrics": 1,
    "objective": 2,
    "submission": 2,
    "detector": 3,
    "optim": 3,
    "lit_module": 4,
    "errors": -1,
    "outputs": 1,
    "checkpoints": 5,
    # Lightning's checkpoint I/O of a run: on checkpoints (the archive bound), under cli
    "checkpoint_io": 5.5,
    "callbacks": 5,
    "sweeps": 5,
    "tracking": 5,
    "run_log": 5,
    # which epoch is the best (tie rule): the checkpoint callback and run_log's EpochLog
    "selection": 4.5,
    "viz": 4,
    "conf": -1,
    # the commands (one module per console script) and what they share: building a run from
    # its config, its run folder, its results files, user errors as one line
    # exporting a checkpoint to a torch.export program and loading one back
    "deployment": 6,
    "cli": 7,
    # ``python -m asl_tal.train``: runs cli.train
    "train": 8,
}


def unit_of(module: str) -> str:
    """``asl_tal.models.blocks`` -> ``models``; ``asl_tal`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, package: Path) -> list[str]:
    """Every ``asl_tal`` module that ``path`` imports (at any depth of the file)."""
    source = module_name(path, package)
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = source.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            # ``from asl_tal import viz`` imports the sub-module ``asl_tal.viz``
            if module == "asl_tal":
                names += [f"asl_tal.{alias.name}" for alias in node.names]
    return [n for n in names if n == "asl_tal" or n.startswith("asl_tal.")]


def backward_imports(package: Path) -> list[str]:
    """``"importer -> imported"`` for every import that does not go down the layers."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = module_name(path, package)
        own = unit_of(source)
        if own not in LAYERS:
            problems.append(f"{source}: not placed in a layer")
            continue
        for target in imported_modules(path, package):
            other = unit_of(target)
            if other == own or other == "__init__":
                continue
            if other not in LAYERS or LAYERS[other] >= LAYERS[own]:
                problems.append(f"{source} -> {target}")
    return problems


def test_imports_only_go_down_the_layers():
    assert backward_imports(PACKAGE) == []


def test_a_planted_backward_import_is_found(tmp_path):
    package = tmp_path / "asl_tal"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "__init__.py").write_text("")
    (package / "models" / "blocks.py").write_text(
        "import torch\n\ndef f():\n    from asl_tal.objective.objective import ASLObjective\n"
    )
    (package / "models" / "heads.py").write_text("from . import blocks\nfrom ..metrics import m\n")
    (package / "data.py").write_text("from asl_tal import viz\n")
    assert backward_imports(package) == [
        "asl_tal.data -> asl_tal.viz",
        "asl_tal.models.blocks -> asl_tal.objective.objective",
        "asl_tal.models.heads -> asl_tal.metrics",
    ]


@pytest.mark.parametrize("unit", sorted({unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}))
def test_every_module_has_a_layer(unit):
    assert unit in LAYERS
