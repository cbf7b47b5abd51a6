"""The process-wide state that a command changes, set up as in a process of its own and put
back after the command ran in this one.

A command sees its ``sys.argv``, environment (``$TMPDIR`` read anew) and working directory,
empty output streams, a root logger without handlers (as at interpreter start:
``logging.basicConfig`` and Hydra's job logging configure it) and its warnings printed to
its stderr. Afterwards everything is as before: the environment (Lightning's
``seed_everything`` writes ``PL_*`` variables), the working directory, every logger's level,
handlers and filters (Hydra's job logging replaces the root's; its log file is closed), the
warning filters, Hydra's global state, torch's deterministic-algorithms flag, thread count
and matmul precision, and the random generators of ``random``, NumPy and torch. W&B is torn
down as at a process's exit.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig


def all_loggers() -> list[logging.Logger]:
    """The root logger and every logger created so far."""
    made = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(lg for lg in made if isinstance(lg, logging.Logger))]


@contextlib.contextmanager
def logging_state() -> Iterator[None]:
    """Every logger's level, handlers, filters and switches put back afterwards; the root
    logger starts without handlers at level WARNING; handlers added meanwhile are closed."""
    saved = {
        lg: (lg.level, lg.handlers[:], lg.filters[:], lg.propagate, lg.disabled)
        for lg in all_loggers()
    }
    disable = logging.root.manager.disable
    root = logging.getLogger()
    root.handlers = []
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        kept = {id(h) for state in saved.values() for h in state[1]}
        for lg, (level, handlers, filters, propagate, disabled) in saved.items():
            for handler in lg.handlers:
                if id(handler) not in kept:
                    handler.close()
            lg.setLevel(level)
            lg.handlers, lg.filters = handlers, filters
            lg.propagate, lg.disabled = propagate, disabled
        logging.disable(disable)


@contextlib.contextmanager
def captured_streams() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """``sys.stdout`` / ``sys.stderr`` replaced by two buffers; so is the stream of every
    logging handler that writes to the process's stdout or stderr (Lightning binds one when
    it is imported). Handlers made meanwhile on the buffers write to the real streams after."""
    out, err = io.StringIO(), io.StringIO()
    real = {"out": (sys.stdout, sys.__stdout__), "err": (sys.stderr, sys.__stderr__)}
    buffers = {"out": out, "err": err}
    moved = []
    for handler in stream_handlers():
        for key, streams in real.items():
            if any(handler.stream is s for s in streams):
                moved.append((handler, handler.stream))
                handler.setStream(buffers[key])
    stdout, stderr = sys.stdout, sys.stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
        for handler in stream_handlers():
            if handler.stream is out or handler.stream is err:
                handler.setStream(stdout if handler.stream is out else stderr)


def stream_handlers() -> list[logging.StreamHandler]:
    """The handlers of every logger that write to a stream, not to a file."""
    return [
        handler
        for lg in all_loggers()
        for handler in lg.handlers
        if type(handler) is logging.StreamHandler
    ]


@contextlib.contextmanager
def warnings_to(stream: io.StringIO) -> Iterator[None]:
    """Warnings printed to ``stream`` as a process prints them to stderr; the filters that
    are added meanwhile are dropped afterwards."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def wandb_torn_down() -> Iterator[None]:
    """W&B torn down afterwards, as when a process exits: its runs finished, its service
    process ended, every run file it wrote complete (the next command starts its own)."""
    try:
        yield
    finally:
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()


@contextlib.contextmanager
def torch_state() -> Iterator[None]:
    """Torch's global switches and every random generator put back afterwards."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    precision = torch.get_float32_matmul_precision()
    # the legacy global generator: what Lightning's seed_everything seeds
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())  # noqa: NPY002
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(precision)
        random.setstate(rng[0])
        np.random.set_state(rng[1])  # noqa: NPY002
        torch.set_rng_state(rng[2])


@contextlib.contextmanager
def environment(argv: list[str], env: dict[str, str] | None, cwd: Path | None) -> Iterator[None]:
    """``sys.argv``, ``os.environ`` (``env`` added, no W&B key; ``$TMPDIR`` read anew) and
    the working directory of the command, put back afterwards."""
    saved = sys.argv, dict(os.environ), os.getcwd(), tempfile.tempdir
    os.environ.pop("WANDB_API_KEY", None)
    os.environ.update(env or {})
    sys.argv = argv
    tempfile.tempdir = None
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        sys.argv, environ, workdir, tempfile.tempdir = saved
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(workdir)


@contextlib.contextmanager
def hydra_state() -> Iterator[None]:
    """Hydra's global state put back afterwards: the app it initialised cleared, the job's
    config as before."""
    job_config = HydraConfig.instance().cfg
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = job_config


@contextlib.contextmanager
def command_state(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The state of a command run in this process; yields its ``(stdout, stderr)`` buffers."""
    with (
        environment(argv, env, cwd),
        torch_state(),
        hydra_state(),
        logging_state(),
        captured_streams() as (out, err),
        wandb_torn_down(),
        warnings_to(err),
    ):
        yield out, err
