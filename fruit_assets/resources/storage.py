from dagster import ConfigurableResource
from pydantic import Field

from fruit_assets.layout import DataLayout


class FruitStorage(ConfigurableResource):
    """Where the dataset lives and outputs go. Credentials come from the standard AWS chain only."""

    data_uri: str = Field(
        default="./data",
        description="Root holding Training/<Class>/ and receiving outputs: a path, file:// or s3:// URI.",
    )
    allow_mass_deletion: bool = Field(
        default=False,
        description="Delete the outputs of the classes gone from Training/ even when Training/ is empty or lost "
        "more than half of its classes at once (otherwise refused: a wrong prefix or an outage).",
    )

    @property
    def layout(self) -> DataLayout:
        return DataLayout.at(self.data_uri)
