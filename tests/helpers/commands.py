"""The commands of asl-tal (``asl-train``, ``asl-eval`` ...) run as a user runs them.

:func:`run_command` calls a console script's function in this process, with ``sys.argv``
set and its output captured, and gives the exit status and output a user would see; the
process-wide state the command changes is put back afterwards
(:func:`helpers.process_state.command_state`). :func:`run_process` runs ``python -m``
in a process of its own, for what needs one: a kill, two runs at once, the module entry.

The command names map to functions through ``[project.scripts]`` of ``pyproject.toml``
(``train`` -> ``asl-train`` -> ``asl_tal.train:main``), the one table a move of an entry
point changes.
"""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomllib

from helpers.process_state import command_state

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


@dataclass(frozen=True)
class Result:
    """What a command gave back: its exit status and its output (as ``CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


@functools.cache
def console_scripts() -> dict[str, str]:
    """``{"asl-train": "asl_tal.train:main", ...}`` from ``pyproject.toml``."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def entry_function(command: str) -> Callable[[], object]:
    """The function that the console script ``asl-<command>`` calls."""
    module, name = console_scripts()[f"asl-{command}"].split(":")
    return getattr(importlib.import_module(module), name)


def exit_status(code: object) -> int:
    """The exit status of ``sys.exit(code)``; a message (not None or an int) is printed."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


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


def run_command(
    command: str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> Result:
    """Run ``asl-<command> args...`` in this process, as its console script does
    (``sys.exit(function())``), in ``cwd`` with ``env`` added to the environment.

    An exception the command lets out is printed with its traceback and is exit status 1,
    as in a process of its own. With ``check`` a status other than 0 fails the test.
    """
    function = entry_function(command)
    with command_state([f"asl-{command}", *args], env, cwd) as (out, err):
        try:
            code = exit_status(function())
        except SystemExit as stop:
            code = exit_status(stop.code)
        except Exception:
            traceback.print_exc()
            code = 1
    return checked(Result(code, out.getvalue(), err.getvalue()), command, check)


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
