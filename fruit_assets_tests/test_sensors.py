"""new_uploads_sensor against a real S3 server and a real Dagster instance."""

import os
import subprocess
import sys

import pytest
from dagster import build_sensor_context

from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.resources import FruitStorage
from fruit_assets.sensors import new_uploads_sensor
from fruit_assets.steps.changes import decode_cursor
from fruit_assets.storage import open_store

CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]


def tick(instance, root, cursor):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"storage": FruitStorage(data_uri=root)})
    result = new_uploads_sensor(context)
    # What the daemon does with a result: register partitions, keep the cursor.
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in result.run_requests or []
    ]
    return result, ranges


def test_sensor_reacts_to_exactly_what_changed(s3_sample_root, dagster_instance):
    store = open_store(s3_sample_root)
    training = f"{s3_sample_root}/Training"

    first, ranges = tick(dagster_instance, s3_sample_root, None)
    assert set(dagster_instance.get_dynamic_partitions(fruit_class_partitions.name)) == set(CLASSES)
    assert ranges == [("Apple Red 1", "Pepper Red")]  # every class, one run (contiguous range)
    [request] = first.run_requests
    assert {k.to_user_string() for k in request.asset_selection} == {"raw_images", "image_embeddings"}
    assert len(first.cursor) < 400 and set(decode_cursor(first.cursor)) == set(CLASSES)

    unchanged, ranges = tick(dagster_instance, s3_sample_root, first.cursor)
    assert ranges == [] and unchanged.skip_reason.skip_message == "no change in 3 classes (36 objects)"

    store.write_bytes(f"{training}/Banana/new_100.jpg", store.read_bytes(f"{training}/Banana/0_100.jpg"))
    added, ranges = tick(dagster_instance, s3_sample_root, unchanged.cursor)
    assert ranges == [("Banana", "Banana")]

    store.write_bytes(f"{training}/Pepper Red/3_100.jpg", store.read_bytes(f"{training}/Pepper Red/4_100.jpg"))
    modified, ranges = tick(dagster_instance, s3_sample_root, added.cursor)
    assert ranges == [("Pepper Red", "Pepper Red")]

    store.delete([f"{training}/Apple Red 1/5_100.jpg"])
    deleted, ranges = tick(dagster_instance, s3_sample_root, modified.cursor)
    assert ranges == [("Apple Red 1", "Apple Red 1")]

    store.write_bytes(f"{training}/Kiwi 2/0_100.jpg", store.read_bytes(f"{training}/Banana/0_100.jpg"))
    new_class, ranges = tick(dagster_instance, s3_sample_root, deleted.cursor)
    assert ranges == [("Kiwi 2", "Kiwi 2")]
    assert "Kiwi 2" in dagster_instance.get_dynamic_partitions(fruit_class_partitions.name)

    store.delete_prefix(f"{training}/Kiwi 2")
    gone, ranges = tick(dagster_instance, s3_sample_root, new_class.cursor)
    assert ranges == [] and "Kiwi 2" not in decode_cursor(gone.cursor)


def test_dagster_sensor_preview_with_a_stored_cursor_requests_nothing_new(s3_sample_root, dagster_instance, tmp_path):
    """A new process (as after a daemon restart) with the persisted cursor re-requests nothing;
    a change after it is still seen."""
    first, _ = tick(dagster_instance, s3_sample_root, None)
    env = {**os.environ, "FRUIT_DATA_URI": s3_sample_root, "DAGSTER_HOME": dagster_instance.root_directory}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")

    def preview():
        return subprocess.run(
            [dagster, "sensor", "preview", "new_uploads_sensor", "-m", "fruit_assets", "--cursor", first.cursor],
            env=env, capture_output=True, text=True, timeout=300,
        )

    quiet = preview()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "no change in 3 classes" in quiet.stdout + quiet.stderr

    store = open_store(s3_sample_root)
    store.write_bytes(f"{s3_sample_root}/Training/Banana/extra_100.jpg", b"\xff\xd8 not really a jpeg")
    noticed = preview()
    assert noticed.returncode == 0, noticed.stderr[-2000:]
    assert "returning run requests for 1 run(s)" in noticed.stdout
    assert "0 new, 1 changed, 0 deleted; 1 run(s) requested for Banana\n" in noticed.stderr


@pytest.mark.parametrize("where", ["s3", "local"])
def test_first_tick_after_a_materialization_requests_nothing_then_exactly_what_changed(
    where, s3_sample_root, sample_root, dagster_instance
):
    """Starting `dagster dev` after `fruit-assets materialize`: the sensor has no cursor yet, but
    every class is exactly what its manifest recorded, so no run is requested."""
    from fruit_assets.layout import DataLayout
    from fruit_assets.steps.manifest import build_manifests

    root = s3_sample_root if where == "s3" else sample_root
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, CLASSES)
    build_manifests(DataLayout.at(root), CLASSES)  # what raw_images wrote for each class
    store = open_store(root)

    first, ranges = tick(dagster_instance, root, None)
    assert ranges == [] and first.skip_reason.skip_message == "no change in 3 classes (36 objects)"
    assert set(decode_cursor(first.cursor)) == set(CLASSES)

    store.write_bytes(f"{DataLayout.at(root).training}/Banana/new_100.jpg",
                      store.read_bytes(f"{DataLayout.at(root).training}/Banana/0_100.jpg"))
    changed, ranges = tick(dagster_instance, root, first.cursor)
    assert ranges == [("Banana", "Banana")]


def test_first_tick_requests_a_class_that_changed_since_its_manifest(s3_sample_root, dagster_instance):
    from fruit_assets.layout import DataLayout
    from fruit_assets.steps.manifest import build_manifests

    layout = DataLayout.at(s3_sample_root)
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, CLASSES)
    build_manifests(layout, CLASSES)
    store = open_store(s3_sample_root)
    # Same key and size, other content: only the ETag tells.
    original = store.read_bytes(f"{layout.training}/Pepper Red/1_100.jpg")
    store.write_bytes(f"{layout.training}/Pepper Red/1_100.jpg", original[:-2] + bytes([original[-2] ^ 1]) + original[-1:])
    store.delete([f"{layout.training}/Apple Red 1/2_100.jpg"])

    first, ranges = tick(dagster_instance, s3_sample_root, None)
    assert ranges == [("Apple Red 1", "Apple Red 1"), ("Pepper Red", "Pepper Red")]
