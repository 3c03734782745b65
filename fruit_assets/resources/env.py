import os

from dagster import EnvVar


def env_or_default(name: str, default: str):
    """``EnvVar(name)`` when the variable is set, else the default: Dagster shows the variable's
    name (not its value) in the UI, and an unset variable still gives a working local setup."""
    return EnvVar(name) if os.environ.get(name) else default


def resolved(value: str) -> str:
    """The value behind a field that may hold an ``EnvVar`` (outside a run's resource init)."""
    if not isinstance(value, EnvVar):
        return value
    setting = value.get_value()
    if setting is None:  # env_or_default makes an EnvVar only of a variable that is set
        raise ValueError(f"the environment variable {value.env_var_name} is not set")
    return setting
