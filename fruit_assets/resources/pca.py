from dagster import ConfigurableResource
from pydantic import Field

from fruit_assets.pca import check_variance_target


class PcaSettings(ConfigurableResource):
    # A string because Dagster's EnvVar feeds str (and int) fields only; parsed and range-checked
    # where it is used, after the variable is resolved.
    variance_target: str = Field(
        default="0.95", description="Keep the smallest k whose explained variance reaches this, in (0, 1]."
    )

    @property
    def target(self) -> float:
        return check_variance_target(self.variance_target)
