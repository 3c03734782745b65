import glob

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fruit_assets.layout import DataLayout
from fruit_assets.steps.manifest import discover_classes
from fruit_assets.steps.embeddings import build_embeddings
from fruit_assets.steps.manifest import build_manifests
from fruit_assets.spark_jobs.embed import EmbedSettings, plan_slices
from fruit_assets_tests.harness.reference import reference_embeddings


def test_plan_slices_few_large_tasks_at_least_one_per_core():
    assert plan_slices(0, 2, 2000) == 1
    assert plan_slices(3, 4, 2000) == 3
    assert plan_slices(2000, 2, 2000) == 2
    assert plan_slices(20000, 2, 2000) == 10
    assert plan_slices(20001, 2, 2000) == 12


@pytest.fixture(params=["onnxruntime", "tensorflow"])
def inference_model(request, onnx_model, tensorflow_model):
    return {"onnxruntime": onnx_model, "tensorflow": tensorflow_model}[request.param]


def test_spark_embeddings_equal_single_process_tensorflow(spark, sample_root, inference_model, weights_file):
    layout = DataLayout.at(sample_root)
    classes = discover_classes(layout)
    build_manifests(layout, classes)
    # Small tasks and batches: several tasks per class and a short last batch in each.
    settings = EmbedSettings(batch_size=5, max_images_per_task=7)
    # A SparkContext, as the product's runs give the steps (they make no SQL session).
    report = build_embeddings(spark.sparkContext, layout, classes, inference_model, "run-ref", settings)
    assert report.embedded == report.images == 36 and report.quarantined == 0

    table = ds.dataset(f"{sample_root}/embeddings", format="parquet").to_table().sort_by("path")
    assert table.num_rows == 36
    assert set(table.column_names) >= {"path", "fruit_class", "embedding"}
    paths = table["path"].to_pylist()
    assert len(set(paths)) == 36
    assert all(p.startswith(f"file://{sample_root}/Training/") for p in paths)
    assert set(table["fruit_class"].to_pylist()) == {"Apple Red 1", "Banana", "Pepper Red"}
    got = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    assert got.shape == (36, 1280)

    expected = reference_embeddings(weights_file, [open(p[len("file://"):], "rb").read() for p in paths])
    relative = np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert relative.max() < 1e-4
    # ONNX Runtime's kernels sum in another order than TensorFlow's: ~5e-5 absolute at most.
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 if inference_model.engine == "tensorflow" else 1e-4)
    assert {pq.read_schema(f).metadata[b"fruit_assets.engine"].decode()
            for f in glob.glob(f"{sample_root}/embeddings/*/*.parquet")} == {inference_model.engine}


def odd_images() -> dict[str, bytes]:
    from fruit_assets_tests.featurize.test_images import encode, gradient

    exif = Image.Exif()
    exif[0x0112] = 6
    ramp = (np.tile(np.linspace(0, 65535, 64), (64, 1))).astype(np.uint16)
    return {
        "grey.png": encode(gradient("L"), "PNG"),
        "cmyk.jpg": encode(gradient("CMYK"), "JPEG"),
        "sixteen.png": encode(Image.fromarray(ramp), "PNG"),
        "rotated.jpg": encode(gradient(size=(120, 60)), "JPEG", exif=exif),
        "alpha.png": encode(gradient("RGBA"), "PNG"),
        "palette.gif": encode(gradient("P"), "GIF"),
    }


def test_odd_images_equal_keras_on_the_decoded_pixels(spark, tmp_path, inference_model, weights_file):
    """Grayscale, CMYK, 16-bit, EXIF-rotated, alpha, palette: both engines embed what Keras embeds
    for the decoded image (decoding itself is checked against Pillow in test_images)."""
    import keras

    from fruit_assets.featurize import decode_image, preprocess_batch

    folder = tmp_path / "data" / "Training" / "Odd"
    folder.mkdir(parents=True)
    images = odd_images()
    for name, data in images.items():
        (folder / name).write_bytes(data)
    layout = DataLayout.at(str(tmp_path / "data"))
    build_manifests(layout, ["Odd"])
    report = build_embeddings(spark, layout, ["Odd"], inference_model, "run-odd", EmbedSettings(batch_size=4))
    assert (report.embedded, report.quarantined) == (len(images), 0)
    table = ds.dataset(layout.embeddings[len("file://"):], format="parquet").to_table().sort_by("path")
    got = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)

    reference = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, pooling="avg", weights=None)
    reference.load_weights(weights_file)
    names = [p.rsplit("/", 1)[1] for p in table["path"].to_pylist()]
    expected = reference.predict(preprocess_batch(np.stack([decode_image(images[n]) for n in names])), verbose=0)
    relative = np.linalg.norm(got - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert relative.max() < 1e-4


def test_an_object_listed_too_large_is_refused_unread_and_a_vanished_one_recorded(tmp_path):
    from fruit_assets.featurize.images import MAX_IMAGE_BYTES
    from fruit_assets.spark_jobs.embed import fetch_and_decode

    gone = f"file://{tmp_path}/gone.jpg"  # listed, then deleted: never there for this test
    image, (reason, message) = fetch_and_decode(gone, listed_size=MAX_IMAGE_BYTES + 1)
    # too_large, not vanished: the size alone decided, the object was not even opened.
    assert image is None and reason == "too_large" and str(MAX_IMAGE_BYTES) in message
    image, (reason, message) = fetch_and_decode(gone, listed_size=1234)
    assert image is None and reason == "vanished" and gone in message
    path = tmp_path / "fine.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    image, failure = fetch_and_decode(f"file://{path}", listed_size=path.stat().st_size)
    assert failure is None and image.shape == (224, 224, 3)


def test_an_object_read_with_another_size_than_listed_is_changed_since_listing(tmp_path):
    """Its manifest ETag names the listed bytes, not these: they must not be embedded under it."""
    from fruit_assets.spark_jobs.embed import fetch_and_decode

    path = tmp_path / "rewritten.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)
    size = path.stat().st_size
    image, (reason, message) = fetch_and_decode(f"file://{path}", listed_size=size - 7)
    assert image is None and reason == "changed_since_listing"
    assert f"more than the {size - 7} bytes listed (not read further)" in message
    image, (reason, message) = fetch_and_decode(f"file://{path}", listed_size=size + 7)
    assert image is None and reason == "changed_since_listing" and f"{size} bytes read, {size + 7} listed" in message
    image, failure = fetch_and_decode(f"file://{path}", listed_size=size)
    assert failure is None and image.shape == (224, 224, 3)


def test_isolation_blames_the_image_in_flight_and_quarantines_it_on_the_second_death(tmp_path):
    """The marker protocol, on real storage, as successive task attempts meet it: each attempt
    starts by reading what the last one left."""
    from fruit_assets.spark_jobs.embed import Isolation

    marker = f"file://{tmp_path}/_isolation/part-00003.json"
    rows = [(f"file:///d/{name}.png", "C", "e") for name in ("a", "b", "c")]
    first = Isolation(marker)
    assert first.order(rows) == [0, 1, 2] and all(first.verdict(r[0]) is None for r in rows)
    first.decoding(rows[1][0])  # ... and the worker dies decoding b

    second = Isolation(marker)
    assert second.deaths == {rows[1][0]: 1} and second.order(rows) == [1, 0, 2]  # b first, alone
    assert second.verdict(rows[1][0]) is None
    # A death before any image (loading the model) blames none: the marker was cleared on start.
    third = Isolation(marker)
    assert third.deaths == {rows[1][0]: 1}
    third.decoding(rows[1][0])  # b, alone and first, kills it again

    fourth = Isolation(marker)
    reason, message = fourth.verdict(rows[1][0])
    assert reason == "worker_killed" and "died 2 times" in message
    assert fourth.order(rows) == [0, 2]  # b is not read again
    # An image whose decode alone raised MemoryError is out_of_memory for every later attempt too.
    fourth.ran_out_of_memory(rows[2][0], MemoryError())
    assert Isolation(marker).verdict(rows[2][0])[0] == "out_of_memory"
