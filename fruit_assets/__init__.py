"""fruit_assets: Fruits-360 images -> MobileNetV2 embeddings on Spark -> PCA features, as Dagster assets.

The code location is ``fruit_assets.definitions`` (``dagster ... -m fruit_assets.definitions``);
importing the package itself loads no Dagster, so Spark's Python workers import the featurize and
PCA code without it. ``read_reduced_features(root)`` and ``read_embeddings(root)`` return one
complete published version as a ``pyarrow.Table``.
"""

from fruit_assets.storage.readers import read_embeddings, read_reduced_features

__all__ = ["read_embeddings", "read_reduced_features"]
