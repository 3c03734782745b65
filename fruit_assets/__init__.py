"""fruit_assets: Fruits-360 images -> MobileNetV2 embeddings on Spark -> PCA features, as Dagster assets.

``dagster ... -m fruit_assets`` finds ``defs`` here; ``read_reduced_features(root)`` and
``read_embeddings(root)`` return one complete published version as a ``pyarrow.Table``. Spark's Python workers import this package
for the featurize/pca code only: they run with FRUIT_ASSETS_SPARK_WORKER=1 (set by our session
builder) and skip loading Dagster, which would cost each worker a second and ~100 MB for nothing.
"""

import os

from fruit_assets.storage.readers import read_embeddings, read_reduced_features

__all__ = ["read_embeddings", "read_reduced_features"]

if os.environ.get("FRUIT_ASSETS_SPARK_WORKER") != "1":
    from fruit_assets.definitions import defs

    __all__ += ["defs"]
