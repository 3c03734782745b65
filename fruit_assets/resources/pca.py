from dagster import ConfigurableResource
from pydantic import Field, field_validator


class PcaSettings(ConfigurableResource):
    # A string because Dagster's EnvVar feeds str (and int) fields only.
    variance_target: str = Field(
        default="0.95", description="Keep the smallest k whose explained variance reaches this, in (0, 1]."
    )

    @field_validator("variance_target")
    @classmethod
    def _in_range(cls, value):
        if not isinstance(value, str):  # an EnvVar reference, resolved and re-validated later
            return value
        try:
            target = float(value)
        except ValueError:
            raise ValueError(f"FRUIT_PCA_VARIANCE must be a number in (0, 1], got {value!r}") from None
        if not 0.0 < target <= 1.0:
            raise ValueError(f"FRUIT_PCA_VARIANCE must be in (0, 1], got {value!r}")
        return value

    @property
    def target(self) -> float:
        return float(self.variance_target)
