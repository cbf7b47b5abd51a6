"""The commands of asl-tal (``asl-train``, ``asl-eval`` ...) run as a user runs them:
:func:`run_process` runs ``python -m asl_tal.<command>`` in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def process_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command's own process: this one's with ``env`` added, one
    thread, no W&B key, ``tests/`` importable (:mod:`helpers.callbacks`)."""
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("WANDB_API_KEY", None)
    return full_env


def checked(result, command: str, check: bool):
    if check and result.returncode != 0:
        raise AssertionError(
            f"asl-{command} exited {result.returncode}\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-5000:]}"
        )
    return result


def run_process(
    command: str,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """``python -m asl_tal.<command> args...`` in a process of its own (:func:`process_env`);
    with ``check`` an exit status other than 0 fails the test."""
    proc = subprocess.run(
        [sys.executable, "-m", f"asl_tal.{command}", *args],
        capture_output=True,
        text=True,
        env=process_env(env),
        timeout=600,
    )
    return checked(proc, command, check)
