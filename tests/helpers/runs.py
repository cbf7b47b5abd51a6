"""Command lines for tiny runs, and reading what a run wrote or said."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def tiny(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """Overrides of a seconds-long CPU run of ``debug=tiny`` (the synthetic set generated
    under ``data_dir`` on first use) in the run folder ``run_dir``."""
    return [
        "debug=tiny",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "trainer.accelerator=cpu",
        "trainer.deterministic=true",
        *extra,
    ]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def fingerprint(path: Path) -> tuple[int, str]:
    """``(size, SHA-256)`` of a file."""
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def one_error_line(err: str, *words: str) -> str:
    """The one ``error: ...`` line of ``err``, which holds no traceback, holding ``words``."""
    assert "Traceback" not in err, err[-4000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-4000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def error_line(result, *words: str) -> str:
    """The one ``error:`` line of a refused command (a ``Result`` or ``CompletedProcess``):
    exit status 2, no traceback, the line holds ``words``."""
    assert result.returncode == 2, result.stderr[-4000:]
    return one_error_line(result.stderr, *words)


def write_test_scores(results: Path, last: float, selected: float | None = None) -> None:
    """The test scores ``train`` writes into a run's ``results/``: the last epoch's
    ``average_mAP`` in ``test_metrics.json``; with ``selected``, that file holds the selected
    checkpoint's (``"weights": "best"``) and ``test_last_metrics.json`` the last epoch's."""
    results.mkdir(parents=True)
    if selected is None:
        (results / "test_metrics.json").write_text(
            json.dumps({"average_mAP": last, "weights": "last"})
        )
        return
    (results / "test_metrics.json").write_text(
        json.dumps({"average_mAP": selected, "weights": "best"})
    )
    (results / "test_last_metrics.json").write_text(
        json.dumps({"average_mAP": last, "weights": "last"})
    )
