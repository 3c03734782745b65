"""Image -> 1280-float MobileNetV2 embedding. No Dagster, no Spark: plain functions tested directly."""

import os

# TensorFlow leaves oneDNN off on non-Intel x86 CPUs; on this project's AMD machines turning it on
# doubles MobileNetV2 throughput (benchmarks/README.md). Must be set before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fruit_assets.featurize.images import (
    IMAGE_SIZE,
    ImageDecodeError,
    decode_image,
    preprocess_batch,
)

__all__ = ["IMAGE_SIZE", "ImageDecodeError", "decode_image", "preprocess_batch"]
