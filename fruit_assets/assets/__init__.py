from fruit_assets.assets.embeddings import image_embeddings
from fruit_assets.assets.model import embedding_model
from fruit_assets.assets.pca import pca_model
from fruit_assets.assets.raw import raw_images
from fruit_assets.assets.reduced import reduced_features

__all__ = ["embedding_model", "image_embeddings", "pca_model", "raw_images", "reduced_features"]
