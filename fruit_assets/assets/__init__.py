from fruit_assets.assets.embeddings import image_embeddings
from fruit_assets.assets.pca import pca_model, reduced_features
from fruit_assets.assets.raw import raw_images

__all__ = ["image_embeddings", "pca_model", "raw_images", "reduced_features"]
