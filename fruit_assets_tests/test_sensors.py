"""new_uploads_sensor against a real S3 server and a real Dagster instance."""

import logging
import os
import subprocess
import sys
import unicodedata

import pytest
from dagster import DeleteDynamicPartitionsRequest, build_sensor_context

from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.resources import FruitStorage
from fruit_assets.sensors import new_uploads_sensor
from fruit_assets.steps.fingerprints import decode_cursor
from fruit_assets.storage import open_store

CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]


class Collect(logging.Handler):
    def __init__(self, records):
        super().__init__()
        self.records = records

    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))


def tick(instance, root, cursor, logs=None):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"storage": FruitStorage(data_uri=root)})
    if logs is not None:  # what the sensor said, as the daemon's log of the tick shows it
        logs.clear()
        context.log.addHandler(Collect(logs))
    result = new_uploads_sensor(context)
    # What the daemon does with a result: register and delete partitions, keep the cursor.
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
        else:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in result.run_requests or [] if "dagster/asset_partition_range_start" in r.tags
    ]
    return result, ranges


def pca_requests(result) -> list[str]:
    """Run keys of the requested pca_model runs (what removes a deleted class's outputs)."""
    return [r.run_key for r in result.run_requests or []
            if [k.to_user_string() for k in r.asset_selection or []] == ["pca_model"]]


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

    assert pca_requests(new_class) == []

    # Scattered changes (the first and the last class, not Banana between them): one run from the
    # first to the last, not one per block (each run is a run start and a Spark application).
    store.write_bytes(f"{training}/Apple Red 1/scattered_100.jpg", store.read_bytes(f"{training}/Banana/1_100.jpg"))
    store.write_bytes(f"{training}/Kiwi 2/scattered_100.jpg", store.read_bytes(f"{training}/Banana/2_100.jpg"))
    scattered, ranges = tick(dagster_instance, s3_sample_root, new_class.cursor)
    assert ranges == [("Apple Red 1", "Kiwi 2")] and len(scattered.run_requests) == 1
    new_class = scattered

    # A class folder deleted: its partition goes (the UI shows it gone), and pca_model is requested
    # (it removes the class's outputs, refits, and the automation re-projects every class).
    store.delete_prefix(f"{training}/Kiwi 2")
    gone, ranges = tick(dagster_instance, s3_sample_root, new_class.cursor)
    assert ranges == [] and "Kiwi 2" not in decode_cursor(gone.cursor)
    assert pca_requests(gone) == ["removed|Kiwi 2"]
    assert set(dagster_instance.get_dynamic_partitions(fruit_class_partitions.name)) == set(CLASSES)
    quiet, ranges = tick(dagster_instance, s3_sample_root, gone.cursor)
    assert ranges == [] and pca_requests(quiet) == [] and quiet.skip_reason is not None


def test_an_emptied_or_mostly_vanished_training_folder_is_refused_not_deleted(s3_sample_root, dagster_instance):
    """A wrong prefix or an outage looks like every class deleted: the sensor refuses, keeps its
    cursor and the partitions, and requests nothing, tick after tick, until a deletion is allowed."""
    store = open_store(s3_sample_root)
    first, _ = tick(dagster_instance, s3_sample_root, None)
    for fruit_class in ("Apple Red 1", "Banana"):  # two of three classes at once
        store.delete_prefix(f"{s3_sample_root}/Training/{fruit_class}")
    for _ in range(2):
        refused, ranges = tick(dagster_instance, s3_sample_root, first.cursor)
        assert ranges == [] and pca_requests(refused) == [] and refused.cursor == first.cursor
        assert refused.skip_reason.skip_message.startswith("2 of 3 classes are gone from ")
        assert set(dagster_instance.get_dynamic_partitions(fruit_class_partitions.name)) == set(CLASSES)
    store.delete_prefix(f"{s3_sample_root}/Training")
    emptied, _ = tick(dagster_instance, s3_sample_root, first.cursor)
    assert emptied.skip_reason.skip_message.startswith("no class folders under ")

    context = build_sensor_context(instance=dagster_instance, cursor=first.cursor,
                                   resources={"storage": FruitStorage(data_uri=s3_sample_root, allow_mass_deletion=True)})
    allowed = new_uploads_sensor(context)
    assert pca_requests(allowed) == ["removed|Apple Red 1|Banana|Pepper Red"]


def test_dagster_sensor_preview_with_a_stored_cursor_requests_nothing_new(s3_sample_root, dagster_instance, tmp_path):
    """A new process (as after a daemon restart) with the persisted cursor re-requests nothing;
    a change after it is still seen."""
    first, _ = tick(dagster_instance, s3_sample_root, None)
    env = {**os.environ, "FRUIT_DATA_URI": s3_sample_root, "DAGSTER_HOME": dagster_instance.root_directory}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")

    def preview():
        return subprocess.run(
            [dagster, "sensor", "preview", "new_uploads_sensor", "-m", "fruit_assets.definitions", "--cursor", first.cursor],
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
    assert ranges == [("Apple Red 1", "Pepper Red")]  # one run; Banana, unchanged, is left as published in it


SIX = ["Apple Red 1", "Avocado", "Banana", "Kiwi", "Lemon", "Pepper Red"]


def registered(instance) -> set[str]:
    return set(instance.get_dynamic_partitions(fruit_class_partitions.name))


def errors(logs) -> list[str]:
    return [message for level, message in logs if level == "ERROR"]


def upload(store, source, target):
    store.write_bytes(target, store.read_bytes(source))


@pytest.fixture(params=["local", "s3"])
def six_classes(request, tmp_path):
    """Six classes of two images each, on local files or the S3 server, each with the manifest
    raw_images wrote for it (outputs under the root, as after a materialization)."""
    from fruit_assets.cli.sample import write_sample_dataset
    from fruit_assets.layout import DataLayout
    from fruit_assets.steps.manifest import build_manifests

    root = (f"s3://{request.getfixturevalue('s3_bucket')}/fruits" if request.param == "s3"
            else f"file://{tmp_path}/data")
    write_sample_dataset(root, 6, 2, seed=5)
    layout = DataLayout.at(root)
    build_manifests(layout, SIX)
    return root, layout


def test_a_deliberate_mass_deletion_unsticks_the_sensor_and_a_refused_one_still_runs_the_rest(
        six_classes, dagster_instance):
    """Issue 28: 4 of 6 class folders deleted. Refused on every tick (not deliberate), yet a class
    uploaded meanwhile and a class that changed still run. Once the deletion is made deliberately
    (pca_model's removal with storage.allow_mass_deletion, which the command line's
    --allow-mass-deletion runs too), the sensor no longer refuses, and a class uploaded afterwards
    is requested."""
    from fruit_assets.assets.pca import remove_gone_classes
    from fruit_assets.steps.ghosts import output_classes
    from fruit_assets.steps.classes import MassDeletionError

    root, layout = six_classes
    store = open_store(root)
    logs = []
    first, ranges = tick(dagster_instance, root, None, logs)
    assert ranges == [] and registered(dagster_instance) == set(SIX) and not errors(logs)

    gone = ["Apple Red 1", "Avocado", "Kiwi", "Lemon"]
    for fruit_class in gone:
        store.delete_prefix(layout.training_class(fruit_class))
    upload(store, f"{layout.training_class('Banana')}/0_100.jpg", f"{layout.training_class('Cherry')}/0_100.jpg")
    upload(store, f"{layout.training_class('Pepper Red')}/0_100.jpg", f"{layout.training_class('Banana')}/new_100.jpg")
    refused, ranges = tick(dagster_instance, root, first.cursor, logs)
    [error] = errors(logs)
    # Four of the seven classes in view (six known, Cherry new) are gone: more than half.
    assert error.startswith(f"4 of 7 classes are gone from {layout.training}/ at once (Apple Red 1, Avocado, Kiwi, Lemon)")
    # Nothing deleted; the new class registered and requested, the changed one too, in ranges that
    # never span a partition whose folder is gone (raw_images would fail on it).
    assert pca_requests(refused) == [] and registered(dagster_instance) == set(SIX) | {"Cherry"}
    assert ranges == [("Banana", "Banana"), ("Cherry", "Cherry")]
    # The gone classes keep their fingerprints in the cursor: back unchanged, they would not run again.
    assert set(decode_cursor(refused.cursor)) == set(SIX) | {"Cherry"}

    again, ranges = tick(dagster_instance, root, refused.cursor, logs)
    assert ranges == [] and pca_requests(again) == [] and again.cursor == refused.cursor
    assert again.skip_reason.skip_message.startswith("4 of 7 classes are gone from ") and len(errors(logs)) == 1

    # Not deliberate: pca_model's removal refuses the same loss, and changes nothing.
    with pytest.raises(MassDeletionError, match="^4 of 7 classes are gone from "):
        remove_gone_classes(dagster_instance, layout, allow_mass_deletion=False)
    assert output_classes(layout) == set(SIX) and registered(dagster_instance) == set(SIX) | {"Cherry"}

    # Deliberate: outputs and partitions go. The sensor's cursor still names the gone classes.
    removal = remove_gone_classes(dagster_instance, layout, allow_mass_deletion=True)
    assert removal.removed == gone and removal.plan.to_deregister == gone
    assert output_classes(layout) == {"Banana", "Pepper Red"}
    assert registered(dagster_instance) == {"Banana", "Cherry", "Pepper Red"}
    assert set(gone) <= set(decode_cursor(again.cursor))

    upload(store, f"{layout.training_class('Banana')}/1_100.jpg", f"{layout.training_class('Lime')}/0_100.jpg")
    after, ranges = tick(dagster_instance, root, again.cursor, logs)
    assert errors(logs) == [] and not any("are gone" in message for _level, message in logs)
    assert ranges == [("Lime", "Lime")] and pca_requests(after) == []
    assert registered(dagster_instance) == {"Banana", "Cherry", "Lime", "Pepper Red"}
    assert set(decode_cursor(after.cursor)) == {"Banana", "Cherry", "Lime", "Pepper Red"}
    quiet, ranges = tick(dagster_instance, root, after.cursor, logs)
    assert ranges == [] and quiet.skip_reason.skip_message.startswith("no change in 4 classes")


def test_folders_back_after_a_refused_deletion_are_not_run_again(sample_root, dagster_instance):
    """An outage or a wrong prefix fixed: the classes come back as they were, and nothing runs."""
    import shutil

    root = f"file://{sample_root}"
    first, _ = tick(dagster_instance, root, None)
    for fruit_class in ("Apple Red 1", "Banana"):
        shutil.move(os.path.join(sample_root, "Training", fruit_class), os.path.join(sample_root, fruit_class))
    refused, _ = tick(dagster_instance, root, first.cursor)
    assert refused.skip_reason.skip_message.startswith("2 of 3 classes are gone from ")
    for fruit_class in ("Apple Red 1", "Banana"):
        shutil.move(os.path.join(sample_root, fruit_class), os.path.join(sample_root, "Training", fruit_class))
    back, ranges = tick(dagster_instance, root, refused.cursor)
    assert ranges == [] and back.skip_reason.skip_message == "no change in 3 classes (36 objects)"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_class_folders_with_unusable_names_are_reported_and_skipped_never_doubled(
        where, sample_root, s3_sample_root, dagster_instance):
    """Control characters, Dagster's range separator, a name too long for the keys derived from it,
    and the same name in NFC and NFD: each reported on every tick, none registered, and the sensor
    goes on. (An empty name, from a key like Training//x.jpg, is possible on AWS S3 only: SeaweedFS
    and local folders collapse the two slashes; steps/test_classes.py checks it.)"""
    from fruit_assets.layout import DataLayout

    root = s3_sample_root if where == "s3" else f"file://{sample_root}"
    layout = DataLayout.at(root)
    store = open_store(root)
    nfc, nfd = unicodedata.normalize("NFC", "Pêche plate"), unicodedata.normalize("NFD", "Pêche plate")
    too_long = "a" * (layout.max_class_name_bytes() + 1)  # a folder the storage holds, whose outputs it cannot
    odd = ["Bad\nName", "Range...Like", too_long, nfd]
    image = f"{layout.training_class('Banana')}/0_100.jpg"
    for fruit_class in [nfc] + odd:
        upload(store, image, f"{layout.training_class(fruit_class)}/0_100.jpg")

    logs = []
    first, ranges = tick(dagster_instance, root, None, logs)
    assert registered(dagster_instance) == set(CLASSES) | {nfc}
    assert ranges == [("Apple Red 1", nfc)] and set(decode_cursor(first.cursor)) == set(CLASSES) | {nfc}
    warnings = [message for level, message in logs if level == "WARNING"]
    assert len(warnings) == 4 and not errors(logs)
    assert all(w.startswith(f"class folder skipped under {layout.training}/ for its name: ") for w in warnings)
    text = "\n".join(warnings)
    assert "'Bad\\nName': holds the control character U+000A" in text
    assert "'Range...Like': holds '...', Dagster's partition-range separator" in text
    assert f"({len(too_long)} bytes): {len(too_long)} bytes as a folder name: over the " in text
    assert f"{ascii(nfd)}: the same name as {ascii(nfc)} in another Unicode normalization" in text
    assert "4 class folder(s) skipped for their names" in logs[-1][1]

    # Next tick: the same report, nothing requested, nothing doubled.
    second, ranges = tick(dagster_instance, root, first.cursor, logs)
    assert ranges == [] and second.skip_reason.skip_message == "no change in 4 classes (37 objects)"
    assert len([m for level, m in logs if level == "WARNING"]) == 4
    assert registered(dagster_instance) == set(CLASSES) | {nfc}
