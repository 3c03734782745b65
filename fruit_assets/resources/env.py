import os

from dagster import EnvVar


def env_or_default(name: str, default: str):
    """``EnvVar(name)`` when the variable is set, else the default: Dagster shows the variable's
    name (not its value) in the UI, and an unset variable still gives a working local setup."""
    return EnvVar(name) if os.environ.get(name) else default


def resolved(value):
    """The value behind a field that may hold an ``EnvVar`` (outside a run's resource init)."""
    return value.get_value() if isinstance(value, EnvVar) else value
