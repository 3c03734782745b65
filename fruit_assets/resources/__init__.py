from fruit_assets.resources.model import EmbeddingModelResource
from fruit_assets.resources.pca import PcaSettings
from fruit_assets.resources.spark import SparkResource
from fruit_assets.resources.storage import FruitStorage

__all__ = ["EmbeddingModelResource", "FruitStorage", "PcaSettings", "SparkResource"]
