"""Errors a user can act on, and how to recognise them wherever they were raised. No Dagster.

A misconfiguration must read as one sentence saying what to fix, whether it was raised on the
driver or inside a Spark task (where Spark wraps it in a Java stack trace of a hundred lines).
Every subclass of ``UserFacingError`` registers itself by name when it is defined, so a new one is
recognised in a task's trace without editing a list here.
"""

from __future__ import annotations

import re


class UserFacingError(RuntimeError):
    """Its message alone tells the user what is wrong and what to do; no stack trace needed."""

    registered: dict[str, type] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        UserFacingError.registered[cls.__name__] = cls


UserFacingError.registered[UserFacingError.__name__] = UserFacingError


class ConfigurationError(UserFacingError, ValueError):
    """A setting that cannot work (kept a ValueError: it is a bad value)."""


class RunConfigNotAllowed(UserFacingError):
    """A run config setting that only the deployment may make (e.g. a Spark key outside the sizing allowlist)."""


class WeightsChecksumError(UserFacingError):
    """Model weights whose file is not the one a build was told to expect (its SHA-256 differs)."""


class ExecutorsNeverJoinedError(UserFacingError):
    """A Spark job waited longer than its bound with no executor registered with the driver."""


class TransientError(UserFacingError):
    """A fault that may pass (throttling, a dropped connection) and outlasted the retries made on
    the spot: the same work, run again a little later, may succeed."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is (or wraps, from a Spark task, as its last user-facing error) a TransientError."""
    if isinstance(error, UserFacingError):
        return isinstance(error, TransientError)
    found = _raised_in_task().findall(str(error))
    return bool(found) and issubclass(UserFacingError.registered[found[-1][0]], TransientError)


def _raised_in_task() -> re.Pattern:
    # Spark reports a failed Python task as text: "...fruit_assets.storage.errors.StorageError: <msg>".
    names = "|".join(sorted(map(re.escape, UserFacingError.registered)))
    # Only this package's classes (or a bare class name): another library's ConfigurationError is not ours.
    return re.compile(rf"^(?:fruit_assets[\w.]*\.)?({names}): (.+)$", re.M)


def user_facing_message(error: BaseException) -> str | None:
    """The one-line message for ``error`` if it is (or wraps, from a Spark task) a user-facing
    error; None for anything else, which is a bug and keeps its stack trace."""
    if isinstance(error, UserFacingError):
        return str(error)
    found = _raised_in_task().findall(str(error))
    if found:
        return found[-1][1].strip()
    return None
