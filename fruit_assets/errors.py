"""Errors a user can act on, and how to recognise them wherever they were raised. No Dagster.

A misconfiguration must read as one sentence saying what to fix, whether it was raised on the
driver or inside a Spark task (where Spark wraps it in a Java stack trace of a hundred lines).
"""

from __future__ import annotations

import re


class UserFacingError(RuntimeError):
    """Its message alone tells the user what is wrong and what to do; no stack trace needed."""


class ConfigurationError(UserFacingError, ValueError):
    """A setting that cannot work (kept a ValueError: it is a bad value)."""


# Spark reports a failed Python task as text: "...fruit_assets.storage.objects.StorageError: <msg>".
_RAISED_IN_TASK = re.compile(
    r"^(?:[\w.]+\.)?(StorageError|WeightsUnavailableError|AccountingError|ConfigurationError|ModelParityError): (.+)$", re.M
)


def user_facing_message(error: BaseException) -> str | None:
    """The one-line message for ``error`` if it is (or wraps, from a Spark task) a user-facing
    error; None for anything else, which is a bug and keeps its stack trace."""
    if isinstance(error, UserFacingError):
        return str(error)
    found = _RAISED_IN_TASK.findall(str(error))
    if found:
        return found[-1][1].strip()
    return None
