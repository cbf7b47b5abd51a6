"""The commands of asl-tal (``asl-train``, ``asl-eval`` ...) run as a user runs them.

:func:`run_command` calls a console script's function in this process, with ``sys.argv``
set and its output captured, and gives the exit status and output a user would see; the
process-wide state the command changes is put back afterwards
(:func:`helpers.process_state.command_state`); :func:`run_module` runs ``python -m`` the
same way. :func:`run_process` runs a command in a process of its own, for what needs one:
a kill, two runs at once, the module entry.

The command names map to functions through ``[project.scripts]`` of ``pyproject.toml``
(``train`` -> ``asl-train`` -> ``asl_tal.cli.train:main``), the one table a move of an entry
point changes.
"""

from __future__ import annotations

import functools
import importlib
import os
import runpy
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


def entry_point(command: str) -> tuple[str, str]:
    """``(module, function)`` that the console script ``asl-<command>`` runs."""
    module, name = console_scripts()[f"asl-{command}"].split(":")
    return module, name


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


def checked(result, what: str, check: bool):
    if check and result.returncode != 0:
        raise AssertionError(
            f"{what} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def run_in_process(
    argv: list[str], main: Callable[[], object], env: dict[str, str] | None, cwd: Path | None
) -> Result:
    """``sys.exit(main())`` with ``sys.argv = argv`` in this process (:func:`command_state`).

    An exception that ``main`` lets out is printed with its traceback and is exit status 1,
    as in a process of its own.
    """
    with command_state(argv, env, cwd) as (out, err):
        try:
            code = exit_status(main())
        except SystemExit as stop:
            code = exit_status(stop.code)
        except Exception:
            traceback.print_exc()
            code = 1
    return Result(code, out.getvalue(), err.getvalue())


def run_command(
    command: str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> Result:
    """Run ``asl-<command> args...`` in this process as its console script does, in
    ``cwd`` with ``env`` added to the environment; with ``check`` an exit status other than
    0 fails the test."""
    module, name = entry_point(command)
    main = getattr(importlib.import_module(module), name)
    result = run_in_process([f"asl-{command}", *args], main, env, cwd)
    return checked(result, f"asl-{command}", check)


def run_module(module: str, *args: str, check: bool = True) -> Result:
    """Run ``python -m <module> args...`` in this process (its ``__main__`` code)."""

    def main() -> None:
        runpy.run_module(module, run_name="__main__", alter_sys=True)

    return checked(run_in_process([module, *args], main, None, None), module, check)


def run_process(
    command: str,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """``python -m <module> args...`` of the console script ``asl-<command>`` in a process of
    its own (:func:`process_env`); with ``check`` an exit status other than 0 fails the
    test."""
    module, _ = entry_point(command)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=process_env(env),
        timeout=600,
    )
    return checked(proc, f"python -m {module}", check)
