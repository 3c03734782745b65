"""Independent single-process reference: the spec's steps written out with plain Pillow + Keras."""

import io

import numpy as np
from PIL import Image


def reference_embeddings(weights_file: str, image_bytes: list[bytes]) -> np.ndarray:
    import tensorflow as tf

    model = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, pooling="avg", weights=None)
    model.load_weights(weights_file)
    batch = np.stack(
        [
            np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32)
            for data in image_bytes
        ]
    )
    return model.predict(tf.keras.applications.mobilenet_v2.preprocess_input(batch), verbose=0)
