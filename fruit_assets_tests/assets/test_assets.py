"""The four assets end to end through Dagster, on a real instance and a real Spark session."""

import os
import re
import secrets

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from dagster import materialize

from fruit_assets.assets import embedding_model, image_embeddings, pca_model, raw_images, reduced_features
from fruit_assets.layout import DataLayout
from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.resources import EmbeddingModelResource, FruitStorage, PcaSettings, SparkResource
from fruit_assets_tests.conftest import SPARK_MASTER
from fruit_assets_tests.harness.markdown import markdown_table

ALL_ASSETS = [embedding_model, raw_images, image_embeddings, pca_model, reduced_features]
CLASSES = ["Apple Red 1", "Banana", "Pepper Red"]


def resources(root, weights_file, target="0.9"):
    return {
        "storage": FruitStorage(data_uri=root),
        "spark": SparkResource(master=SPARK_MASTER),
        "embedding_settings": EmbeddingModelResource(weights=weights_file, max_images_per_task=8),
        "pca_settings": PcaSettings(variance_target=target),
    }


def run_graph(instance, root, weights_file, classes=CLASSES):
    instance.add_dynamic_partitions(fruit_class_partitions.name, [c for c in classes if not instance.has_dynamic_partition(fruit_class_partitions.name, c)])
    range_tags = {"dagster/asset_partition_range_start": classes[0], "dagster/asset_partition_range_end": classes[-1]}
    res = resources(root, weights_file)
    results = [
        materialize(ALL_ASSETS, selection=[raw_images, image_embeddings], instance=instance, resources=res, tags=range_tags),
        materialize(ALL_ASSETS, selection=[pca_model], instance=instance, resources=res),
        materialize(ALL_ASSETS, selection=[reduced_features], instance=instance, resources=res, tags=range_tags),
    ]
    assert all(r.success for r in results)
    return results


def metadata_by_partition(result, asset_name) -> dict:
    """{partition (None if unpartitioned): its materialization's metadata} of one run, in event order."""
    return {
        e.event_specific_data.materialization.partition: {
            k: getattr(v, "value", v) for k, v in e.event_specific_data.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == asset_name
    }


def metadata_of(result, asset_name):
    """The metadata that describes the run: of a partitioned asset, its partition that carries
    the run's figures (the end of the run's range); of another, its one materialization."""
    from fruit_assets.assets.metadata import RUN_FIGURES_MARK

    by_partition = metadata_by_partition(result, asset_name)
    if list(by_partition) == [None]:
        return by_partition[None]
    [run_wide] = [meta for meta in by_partition.values() if RUN_FIGURES_MARK in meta]
    return run_wide


def read(root, folder):
    return ds.dataset(os.path.join(root, folder), format="parquet").to_table().sort_by("path")


def test_full_graph_through_dagster(spark, sample_root, weights_file, dagster_instance):
    embed_run, pca_run, reduce_run = run_graph(dagster_instance, sample_root, weights_file)

    # One run materialized every class partition of both assets (single-run backfill policy).
    for asset in ("raw_images", "image_embeddings"):
        keys = dagster_instance.get_materialized_partitions(image_embeddings.key if asset == "image_embeddings" else raw_images.key)
        assert keys == set(CLASSES)
    embed_meta = metadata_of(embed_run, "image_embeddings")
    assert embed_meta["run_num_images"] == 36 and embed_meta["run_num_embedded"] == 36
    assert embed_meta["run_num_quarantined"] == 0 and embed_meta["run_num_classes"] == 3
    # Each partition's materialization describes its own class: its counts, its own published
    # files' digest; the run's figures and pictures are on the run's last partition only.
    from fruit_assets.steps.publication import embeddings_digest
    from fruit_assets.storage.versions import current_version

    for asset_name, run in (("raw_images", embed_run), ("image_embeddings", embed_run), ("reduced_features", reduce_run)):
        by_partition = metadata_by_partition(run, asset_name)
        assert sorted(by_partition) == sorted(CLASSES)
        assert all(meta["num_images"] == 12 for meta in by_partition.values()), asset_name
        run_wide = {key for key in by_partition[CLASSES[-1]] if key.startswith("run_") or key == "per_class"}
        assert run_wide and not any(run_wide & set(by_partition[c]) for c in CLASSES[:-1]), asset_name
    embedded = metadata_by_partition(embed_run, "image_embeddings")
    assert {c: (m["num_embedded"], m["num_featurized"], m["num_reused"]) for c, m in embedded.items()} == {
        c: (12, 12, 0) for c in CLASSES}
    assert {c: m["class_data_version"] for c, m in embedded.items()} == {
        c: embeddings_digest(current_version(DataLayout.at(sample_root).root), [c]) for c in CLASSES}
    assert len({m["class_data_version"] for m in embedded.values()}) == 3
    assert not any("class_counts" in embedded[c] or "executor_cpu_seconds" in embedded[c] for c in CLASSES[:-1])
    assert {"thumbnails", "images_per_class"} <= set(metadata_of(embed_run, "raw_images"))
    # What a reader of the instance finds as the asset's latest run: the partition carrying the run's figures.
    from fruit_assets.assets.metadata import latest_run_figures

    assert latest_run_figures(dagster_instance, image_embeddings.key)["run_num_images"].value == 36
    assert embed_meta["images_per_second"] > 0 and embed_meta["elapsed_seconds"] > 0
    per_class = {row["class"]: row for row in markdown_table(embed_meta["per_class"])}
    assert {c: (row["images"], row["embedded"], row["quarantined"], row["featurized"], row["reused"])
            for c, row in per_class.items()} == {c: ("12", "12", "0", "12", "0") for c in CLASSES}
    # Progress in the run log (what the Dagster UI shows while the step runs): six tasks of six
    # images, reported as they finish, from 0 to all 36. Steps in between are seen when the job
    # outlasts Spark's status updates (a fast machine embeds the 36 in 2 s and may report only the
    # ends; spark_jobs/test_progress.py checks the steps on tasks of a known length).
    progress = [e.user_message for e in dagster_instance.all_logs(embed_run.run_id) if "embedding progress:" in e.user_message]
    done = [int(m.split("embedding progress: ")[1].split("/")[0]) for m in progress]
    assert done[0] == 0 and done[-1] == 36 and done == sorted(done), progress
    assert len(done) >= 3 or embed_meta["elapsed_seconds"] < 5, progress
    assert "36/36 images (100%)" in progress[-1] and "images/s" in progress[-1] and "ETA" in progress[-1]
    # The default engine; the model was converted by this first run and lives where the README says.
    assert embed_meta["inference_engine"] == "onnxruntime"
    assert embed_meta["model_path"] == f"file://{sample_root}/models/embedding/{embed_meta['weights_fingerprint']}.onnx"

    # Files where the README says, class names with spaces intact, nothing temporary in sight.
    for fruit_class in CLASSES:
        assert os.path.isfile(os.path.join(sample_root, "manifests", f"fruit_class={fruit_class}", "manifest.parquet"))
        assert os.listdir(os.path.join(sample_root, "embeddings", f"fruit_class={fruit_class}"))
    assert not os.listdir(os.path.join(sample_root, "_staging"))
    for folder in ("embeddings", "output/resultats_features_parquet"):
        for dirpath, _dirs, files in os.walk(os.path.join(sample_root, folder)):
            assert all(f.endswith(".parquet") and not f.startswith(".") for f in files), files

    manifest = read(sample_root, "manifests")
    assert manifest.num_rows == 36 and set(manifest.column_names) >= {"path", "size", "etag", "mtime"}

    embeddings = read(sample_root, "embeddings")
    vectors = np.stack(embeddings["embedding"].to_numpy(zero_copy_only=False)).astype(np.float64)
    assert vectors.shape == (36, 1280) and np.isfinite(vectors).all()
    assert embeddings["path"].to_pylist() == manifest["path"].to_pylist()

    # pca.npz loads with plain numpy and matches eigh on the same embeddings.
    pca = np.load(os.path.join(sample_root, "models", "pca", "pca.npz"))
    k = pca["components"].shape[0]
    centred = vectors - vectors.mean(axis=0)
    values, vectors_eigh = np.linalg.eigh(np.cov(centred, rowvar=False))
    ratios = values[::-1] / values.sum()
    assert k == int(np.argmax(np.cumsum(ratios) >= 0.9)) + 1
    np.testing.assert_allclose(pca["explained_variance_ratio"], ratios[:k], atol=1e-5)
    np.testing.assert_allclose(np.abs(pca["components"] @ vectors_eigh[:, ::-1][:, :k]), np.eye(k), atol=1e-5)
    np.testing.assert_allclose(pca["mean"], vectors.mean(axis=0), rtol=1e-6, atol=1e-9)
    pca_meta = metadata_of(pca_run, "pca_model")
    assert pca_meta["k"] == k and pca_meta["explained_variance"] >= 0.9 and pca_meta["num_samples"] == 36

    reduced = read(sample_root, "output/resultats_features_parquet")
    assert reduced.column_names[:3] == ["path", "fruit_class", "features"]
    assert reduced["path"].to_pylist() == embeddings["path"].to_pylist()
    features = np.stack(reduced["features"].to_numpy(zero_copy_only=False))
    assert features.dtype == np.float32 and features.shape == (36, k)
    np.testing.assert_allclose(features, (vectors - pca["mean"]) @ pca["components"].T, rtol=1e-4, atol=1e-4)
    assert metadata_of(reduce_run, "reduced_features")["run_num_images"] == 36

    # Spark reads the output folder too, with fruit_class from the files and the folder names.
    spark_rows = spark.read.parquet(os.path.join(sample_root, "output", "resultats_features_parquet"))
    assert spark_rows.count() == 36
    assert {r.fruit_class for r in spark_rows.select("fruit_class").distinct().collect()} == set(CLASSES)

    # Every asset check ran, for every run; the correctness checks passed. The feature-quality
    # checks only warn: on random weights and 12 images a class, their verdict is about the data.
    quality = {"new_images_look_like_their_class", "pca_keeps_class_separability"}
    for result, expected in ((embed_run, 4), (pca_run, 2), (reduce_run, 3)):
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) == expected, evaluations
        assert all(e.passed for e in evaluations if e.check_name not in quality), evaluations
        assert all(e.severity.value == "WARN" for e in evaluations if e.check_name in quality)

    # Re-running the same materialization gives identical results and replaces, not appends.
    run_graph(dagster_instance, sample_root, weights_file)
    again = read(sample_root, "output/resultats_features_parquet")
    assert again.num_rows == 36
    # Identical up to summation order: the second run reuses embeddings (regrouped into other
    # files), so the moments are merged in another order; differences are ~1e-16 in float64.
    np.testing.assert_allclose(np.stack(again["features"].to_numpy(zero_copy_only=False)), features, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.load(os.path.join(sample_root, "models", "pca", "pca.npz"))["components"], pca["components"], rtol=1e-10, atol=1e-12)
    assert again["path"].to_pylist() == reduced["path"].to_pylist()


def test_pca_without_embeddings_fails_with_a_clear_message(spark, sample_root, weights_file, dagster_instance):
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, ["Banana"])
    result = materialize(ALL_ASSETS, selection=[pca_model], instance=dagster_instance,
                         resources=resources(sample_root, weights_file), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "materialize image_embeddings" in str(failure.event_specific_data.error)


def test_unchanged_inputs_are_recognised_and_a_stale_partition_of_a_deleted_class_is_harmless(
        spark, sample_root, weights_file, dagster_instance):
    run_graph(dagster_instance, sample_root, weights_file)
    res = resources(sample_root, weights_file)
    everything = {"dagster/asset_partition_range_start": CLASSES[0], "dagster/asset_partition_range_end": CLASSES[-1]}

    # Inputs unchanged: the same basis without a refit (same data version), nothing projected again.
    first_fit = dagster_instance.get_latest_materialization_event(pca_model.key).asset_materialization.tags
    again = materialize(ALL_ASSETS, selection=[pca_model], instance=dagster_instance, resources=res)
    meta = metadata_of(again, "pca_model")
    assert meta["refit"].startswith("no") and "spark_application_id" not in meta
    assert (dagster_instance.get_latest_materialization_event(pca_model.key).asset_materialization.tags["dagster/data_version"]
            == first_fit["dagster/data_version"])
    reduced = materialize(ALL_ASSETS, selection=[reduced_features], instance=dagster_instance, resources=res, tags=everything)
    meta = metadata_of(reduced, "reduced_features")
    assert meta["up_to_date_classes"].startswith("3 classes") and meta["run_num_images"] == 36
    assert all(e.passed for e in reduced.get_asset_check_evaluations() if e.check_name == "reduced_features_share_one_basis")

    # A class folder deleted: pca_model removes its outputs and its partition, and refits.
    import shutil

    shutil.rmtree(os.path.join(sample_root, "Training", "Banana"))
    removal = materialize(ALL_ASSETS, selection=[pca_model], instance=dagster_instance, resources=res)
    meta = metadata_of(removal, "pca_model")
    assert meta["removed_classes"] == "Banana" and meta["refit"] == "yes" and meta["num_samples"] == 24
    # The refit read no embedding and started no Spark: the kept moments lost Banana's rows.
    assert (meta["moments_from"], meta["embedding_files_read"]) == ("saved", 0) and "spark_application_id" not in meta
    assert not dagster_instance.has_dynamic_partition(fruit_class_partitions.name, "Banana")

    # A run that still asks for it (requested before the partition went, as a backfill of every
    # partition would): the others are projected on the new basis, the gone class is reported.
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, ["Banana"])
    stale = materialize(ALL_ASSETS, selection=[reduced_features], instance=dagster_instance, resources=res,
                        tags={"dagster/asset_partition_range_start": "Apple Red 1", "dagster/asset_partition_range_end": "Banana"},
                        raise_on_error=False)
    assert stale.success
    meta = metadata_of(stale, "reduced_features")
    assert meta["gone_from_training_classes"] == "Banana" and meta["run_num_images"] == 24
    assert metadata_by_partition(stale, "reduced_features")["Banana"]["gone_from_training"] is True
    table = read(sample_root, "output/resultats_features_parquet")
    assert set(table["fruit_class"].to_pylist()) == {"Apple Red 1", "Pepper Red"} and table.num_rows == 24
    assert all(e.passed for e in stale.get_asset_check_evaluations() if e.check_name != "pca_keeps_class_separability"
               and e.check_name != "new_images_look_like_their_class")


@pytest.mark.parametrize("bad", ["0", "1.5", "abc"])
def test_pca_target_is_validated(bad):
    with pytest.raises(ValueError, match=r"FRUIT_PCA_VARIANCE"):
        PcaSettings(variance_target=bad).target


def test_full_graph_on_s3_equals_local(spark, s3_sample_root, sample_root, weights_file, dagster_instance, tmp_path, s3_server):
    """FRUIT_DATA_URI=s3://... : every asset reads and writes S3 (Spark tasks fetch the images and
    write the Parquet themselves), and the result equals the same images on file://."""
    from dagster import DagsterInstance

    from fruit_assets.storage.parquet_io import read_tables
    from fruit_assets.storage import open_store

    embed_run, _pca_run, reduce_run = run_graph(dagster_instance, s3_sample_root, weights_file)
    # Feature-quality figures on S3 too: every new image reviewed, both accuracies measured.
    assert metadata_of(embed_run, "image_embeddings")["num_new_images_reviewed"] == 36
    reduce_meta = metadata_of(reduce_run, "reduced_features")
    assert 0 <= reduce_meta["knn_accuracy_reduced_features"] <= 1 and 0 <= reduce_meta["knn_accuracy_full_embeddings"] <= 1
    home = tmp_path / "local_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as local_instance:
        run_graph(local_instance, sample_root, weights_file)

    store = open_store(s3_sample_root)
    keys = sorted(i.uri[len(s3_sample_root) + 1:] for i in store.list_objects(s3_sample_root) if "/Training/" not in i.uri and not i.uri.startswith(s3_sample_root + "/Training"))
    assert "models/pca/pca.npz" in keys
    assert any(k.startswith("output/resultats_features_parquet/fruit_class=Apple Red 1/part-") for k in keys)
    assert not any(k.startswith("_staging/") for k in keys)

    on_s3 = read_tables([i.uri for i in store.list_objects(f"{s3_sample_root}/output/resultats_features_parquet") if i.uri.endswith(".parquet")]).sort_by("path")
    local = read(sample_root, "output/resultats_features_parquet")
    assert on_s3.num_rows == local.num_rows == 36
    assert [p.split("/Training/")[1] for p in on_s3["path"].to_pylist()] == [p.split("/Training/")[1] for p in local["path"].to_pylist()]
    assert on_s3["path"][0].as_py().startswith(f"{s3_sample_root}/Training/")

    # The secret key never reaches the event log (logs and metadata) or any output object.
    secret = s3_server["AWS_SECRET_ACCESS_KEY"]
    for run in dagster_instance.get_runs():
        for record in dagster_instance.all_logs(run.run_id):
            assert secret not in str(record)
        assert secret not in str(run.tags) and secret not in str(run.run_config)
    for info in store.list_objects(s3_sample_root):
        if "/Training/" not in info.uri:
            assert secret.encode() not in store.read_bytes(info.uri)
    np.testing.assert_allclose(
        np.stack(on_s3["features"].to_numpy(zero_copy_only=False)),
        np.stack(local["features"].to_numpy(zero_copy_only=False)),
        rtol=1e-5, atol=1e-5,
    )


def test_bad_files_are_quarantined_and_an_all_bad_class_fails_its_check(spark, sample_root, weights_file, dagster_instance):
    training = os.path.join(sample_root, "Training")
    good = open(os.path.join(training, "Banana", "0_100.jpg"), "rb").read()
    with open(os.path.join(training, "Banana", ".DS_Store"), "wb") as handle:
        handle.write(b"\x00\x00\x00\x01Bud1" + b"\x00" * 64)
    os.makedirs(os.path.join(training, "Broken"))
    for name, data in {"empty.jpg": b"", "notes.txt": b"hello", "cut.jpg": good[: len(good) // 3]}.items():
        with open(os.path.join(training, "Broken", name), "wb") as handle:
            handle.write(data)
    classes = ["Apple Red 1", "Banana", "Broken", "Pepper Red"]
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, classes)
    result = materialize(
        ALL_ASSETS, selection=[raw_images, image_embeddings], instance=dagster_instance,
        resources=resources(sample_root, weights_file),
        tags={"dagster/asset_partition_range_start": "Apple Red 1", "dagster/asset_partition_range_end": "Pepper Red"},
    )
    assert result.success  # bad files never fail the run
    meta = metadata_of(result, "image_embeddings")
    assert (meta["run_num_images"], meta["run_num_embedded"], meta["run_num_quarantined"]) == (40, 36, 4)

    quarantine = read(sample_root, "quarantine")
    reasons = dict(zip([p.rsplit("/", 1)[1] for p in quarantine["path"].to_pylist()], quarantine["reason"].to_pylist()))
    assert reasons == {".DS_Store": "not_an_image", "empty.jpg": "empty_file", "notes.txt": "not_an_image", "cut.jpg": "corrupt_image"}
    assert all(quarantine["error"].to_pylist())

    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["embeddings_are_1280_finite_floats"].passed and checks["one_row_per_image"].passed
    rate = checks["quarantine_rate"]
    assert not rate.passed and rate.severity.value == "WARN"
    assert "every image of Broken was quarantined" in rate.description


RANDOM = object()  # a made-up value per run (no secret-looking literal in the repository)
CONFIG_ERRORS = {
    # case: (data root, env changes, weights, PCA target, asset, expected message)
    "missing bucket": ("s3://no-such-bucket-anywhere/fruits", {}, None, "0.9", raw_images, r"bucket does not exist"),
    "wrong credentials": ("s3://{bucket}/fruits", {"AWS_SECRET_ACCESS_KEY": RANDOM}, None, "0.9", raw_images,
                          r"secret key does not match"),
    "unreachable endpoint": ("s3://{bucket}/fruits", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, None, "0.9", raw_images,
                             r"cannot reach S3 at http://127.0.0.1:9"),
    "no Training/ under the root": ("{empty}", {}, None, "0.9", raw_images, r"no class folders under .*Training/<Class>"),
    "bad weights path": ("{local}", {}, "/nowhere/weights.h5", "0.9", image_embeddings, r"FRUIT_MODEL_WEIGHTS='/nowhere/weights.h5'"),
    "PCA target outside (0, 1]": ("{local}", {}, None, "1.5", pca_model, r"FRUIT_PCA_VARIANCE must be in \(0, 1\], got '1.5'"),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_configuration_errors_fail_the_step_with_one_clear_line(
    case, spark, s3_bucket, sample_root, weights_file, dagster_instance, tmp_path, monkeypatch
):
    root, env, weights, target, asset, expected = CONFIG_ERRORS[case]
    root = root.format(bucket=s3_bucket, empty=tmp_path / "empty", local=sample_root)
    for name, value in env.items():
        monkeypatch.setenv(name, secrets.token_hex(20) if value is RANDOM else value)
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, ["Banana"])
    kwargs = {} if asset is pca_model else {"partition_key": "Banana"}
    result = materialize(ALL_ASSETS, selection=[asset], instance=dagster_instance,
                         resources=resources(root, weights or weights_file, target), raise_on_error=False, **kwargs)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert re.search(expected, message), message
    assert "\n" not in message and "Traceback" not in message
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "unset") not in message


def test_odd_keys_a_huge_photo_and_a_bomb_on_s3(spark, s3_bucket, sample_source, weights_file, dagster_instance):
    """Object keys with spaces, unicode, quotes and URL-special characters; a 24-megapixel photo;
    a 100-megapixel PNG bomb of a few hundred KB. Every object is accounted for, by its exact key."""
    import io

    from PIL import Image

    from fruit_assets.storage import open_store

    root = f"s3://{s3_bucket}/fruits"
    store = open_store(root)
    with open(os.path.join(sample_source, "Training", "Banana", "0_100.jpg"), "rb") as handle:
        good = handle.read()
    huge, bomb = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 40, 40)).save(huge, "JPEG", quality=70)
    Image.new("L", (10000, 10000)).save(bomb, "PNG", optimize=True)
    odd_class = "Pêche \"plate\" d'été #1"
    objects = {
        f"{odd_class}/it's a \"pear\" ü 1.jpg": good,
        f"{odd_class}/space  and #hash%20+plus.jpg": good,
        f"{odd_class}/日本語/写真.jpg": good,
        f"{odd_class}/huge photo.jpg": huge.getvalue(),
        f"{odd_class}/bomb.png": bomb.getvalue(),
        "Banana/0.jpg": good,
    }
    for key, data in objects.items():
        store.write_bytes(f"{root}/Training/{key}", data)

    classes = sorted(["Banana", odd_class])
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, classes)
    result = materialize(
        ALL_ASSETS, selection=[raw_images, image_embeddings], instance=dagster_instance,
        resources=resources(root, weights_file),
        tags={"dagster/asset_partition_range_start": classes[0], "dagster/asset_partition_range_end": classes[-1]},
    )
    assert result.success
    meta = metadata_of(result, "image_embeddings")
    assert (meta["run_num_images"], meta["run_num_embedded"], meta["run_num_quarantined"]) == (6, 5, 1)

    from fruit_assets.layout import DataLayout
    from fruit_assets.storage.published_files import dataset_files
    from fruit_assets.storage.parquet_io import read_tables

    layout = DataLayout.at(root)
    embedded = read_tables([u for c in classes for u in dataset_files(layout.embeddings, c)])
    quarantined = read_tables(dataset_files(layout.quarantine, odd_class))
    expected = {f"{root}/Training/{key}" for key in objects}
    assert set(embedded["path"].to_pylist()) | set(quarantined["path"].to_pylist()) == expected
    assert quarantined.to_pylist()[0]["path"].endswith("bomb.png") and quarantined["reason"].to_pylist() == ["too_large"]
    assert set(embedded.filter(pc.equal(embedded["fruit_class"], odd_class))["path"].to_pylist()) >= {
        f"{root}/Training/{odd_class}/huge photo.jpg", f"{root}/Training/{odd_class}/it's a \"pear\" ü 1.jpg"}
    # The class folder is escaped the way Spark escapes Hive partition values.
    assert any("fruit_class=Pêche %22plate%22 d%27été %231" in u for u in dataset_files(layout.embeddings, odd_class))


def test_embedding_model_asset_converts_once_and_checks_parity(sample_root, weights_file, dagster_instance):
    import hashlib
    import json

    from fruit_assets_tests.featurize.test_onnx_model import perturbed

    def materialize_model():
        result = materialize(ALL_ASSETS, selection=[embedding_model], instance=dagster_instance,
                             resources=resources(sample_root, weights_file))
        assert result.success
        checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
        assert checks["reduced_precision_keeps_fidelity"].passed  # fp32: nothing to gate
        return metadata_of(result, "embedding_model"), checks["onnx_matches_tensorflow"]

    first, check = materialize_model()
    assert first["converted_now"] is True and check.passed
    assert first["engine"] == "onnxruntime" and first["opset"] == 17 and first["weights"] == weights_file
    assert first["parity_max_rel"] < 1e-4 and first["parity_max_abs"] < 1e-3
    model_file = first["path"][len("file://"):]
    assert os.path.getsize(model_file) == first["size_bytes"] > 8_000_000

    second, check = materialize_model()
    assert second["converted_now"] is False and check.passed and second["sha256"] == first["sha256"]

    # A model that still loads but drifted (its record made to match, as a faulty converter would):
    # the check fails on the next materialization.
    bad = perturbed(open(model_file, "rb").read())
    open(model_file, "wb").write(bad)
    record_file = model_file[: -len(".onnx")] + ".json"
    record = json.load(open(record_file))
    record["sha256"] = hashlib.sha256(bad).hexdigest()
    json.dump(record, open(record_file, "w"))
    third, check = materialize_model()
    assert not check.passed and third["parity_max_rel"] > 1e-2
    assert "limit 0.0001" in check.description
