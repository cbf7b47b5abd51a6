"""A command's user errors as one readable line and exit status 2 (or, in a multirun's
job, a failed job): :func:`user_errors`."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode

from asl_tal.config_blocks import ConfigValueError
from asl_tal.data.annotations import AnnotationError
from asl_tal.data.features import FeatureError
from asl_tal.errors import OutputWriteError, UserInputError
from asl_tal.lit_module import NonFiniteLossError
from asl_tal.sweeps import SweepJobError

log = logging.getLogger("asl_tal")


# DatasetNotFoundError is a FileNotFoundError; the checkpoint errors are UserInputErrors
USER_ERRORS = (
    UserInputError,
    AnnotationError,
    FeatureError,
    FileNotFoundError,
    NonFiniteLossError,
    OutputWriteError,
    ConfigValueError,
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report a user-facing error as one message and exit with status 2 (no traceback).

    In a job of a multirun the message is logged as one line and raised as a
    :class:`~asl_tal.sweeps.SweepJobError` instead: ``SystemExit`` would pass Hydra's job
    error handling and end the whole sweep, where this records the job as failed.
    """
    try:
        yield
    except (*USER_ERRORS, InstantiationException) as err:
        # instantiate() wraps what a third-party constructor raises (a logger's, say)
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if not isinstance(cause, USER_ERRORS):
            raise
        message = one_line_message(cause)
        if in_multirun():
            log.error("job failed: %s", message)
            raise SweepJobError(message) from None
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``, a sweeper or a parallel launcher)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_line_message(err: BaseException) -> str:
    """``err``'s message; for an error re-raised from a DataLoader worker (whose message
    embeds the worker's traceback), the original message only."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]  # "FeatureError: <the original message>"
    return last.split(": ", 1)[1] if ": " in last else last
