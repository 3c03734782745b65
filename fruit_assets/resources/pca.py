from dagster import ConfigurableResource
from pydantic import Field

from fruit_assets.errors import ConfigurationError


def parse_variance_target(value: str) -> float:
    try:
        target = float(value)
    except ValueError:
        raise ConfigurationError(f"FRUIT_PCA_VARIANCE must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < target <= 1.0:
        raise ConfigurationError(f"FRUIT_PCA_VARIANCE must be in (0, 1], got {value!r}")
    return target


class PcaSettings(ConfigurableResource):
    # A string because Dagster's EnvVar feeds str (and int) fields only; parsed and range-checked
    # where it is used, after the variable is resolved.
    variance_target: str = Field(
        default="0.95", description="Keep the smallest k whose explained variance reaches this, in (0, 1]."
    )

    @property
    def target(self) -> float:
        return parse_variance_target(self.variance_target)
