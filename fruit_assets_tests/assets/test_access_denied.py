"""A 403 AccessDenied on a listed image, from the fault proxy in front of the real S3 server: on AWS
it is what a GET of an image deleted since the listing answers to a role without s3:ListBucket, and
what a role missing its s3:GetObject grant gets. The step fails with one line naming the action, the
image and the role (the one AWS_ROLE_ARN names, as IRSA sets it), whether the driver read the image
or a Spark task did; it is never quarantined as vanished, never retried, never a stack trace."""

from __future__ import annotations

from dagster import materialize

from fruit_assets.assets import image_embeddings, raw_images
from fruit_assets.layout import DataLayout
from fruit_assets.partitions import fruit_class_partitions
from fruit_assets.storage import open_store
from fruit_assets_tests.assets.test_assets import ALL_ASSETS, resources
from fruit_assets_tests.assets.test_faults import committed
from fruit_assets_tests.assets.test_transient_faults import proxy, spark_tasks_with, step_attempts  # noqa: F401
from fruit_assets_tests.harness.fault_proxy import ACCESS_DENIED

DRIVER_ROLE = "arn:aws:iam::123456789012:role/fruit-assets-run"
EXECUTOR_ROLE = "arn:aws:iam::123456789012:role/fruit-assets-executor"
NEEDS = ("s3:GetObject on the key (and s3:ListBucket on the bucket so that a deleted object answers 404 "
         "not 403): see infra/iam/")


def one_line_failure(result, instance, step: str, s3_server) -> str:
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == step
    assert step_attempts(instance, result.run_id, step) == 1  # the same grant is missing next time
    message = failure.step_failure_data.user_failure_data.description
    assert "\n" not in message and "Traceback" not in message and "Py4J" not in message
    # Nor does the event keep Spark's or botocore's trace behind the line (`from None`).
    error = failure.step_failure_data.error
    assert error is None or (error.cause is None and not any(
        word in error.to_string() for word in ("Py4JJavaError", "ClientError", "org.apache.spark")))
    assert s3_server["AWS_SECRET_ACCESS_KEY"] not in message and s3_server["AWS_ACCESS_KEY_ID"] not in message
    return message


def test_a_refused_image_fails_the_step_in_one_line_naming_the_role_on_the_driver_and_in_a_spark_task(
    spark, s3_server, s3_sample_root, weights_file, dagster_instance, proxy, monkeypatch  # noqa: F811
):
    root = s3_sample_root
    images = sorted(info.uri for info in open_store(root).list_objects(f"{root}/Training/Banana"))
    dagster_instance.add_dynamic_partitions(fruit_class_partitions.name, ["Banana"])
    res = resources(root, weights_file)

    # The driver (the run role) reads a few listed images for the step's thumbnails.
    monkeypatch.setenv("AWS_ROLE_ARN", DRIVER_ROLE)
    thumbnail = images[0]
    proxy.add_rule(ACCESS_DENIED, method="GET", key=f"{thumbnail.split('/', 3)[3]}$")
    on_driver = materialize(ALL_ASSETS, selection=[raw_images], instance=dagster_instance, partition_key="Banana",
                            resources=res, raise_on_error=False)
    message = one_line_failure(on_driver, dagster_instance, "raw_images", s3_server)
    assert message == f"access denied: s3:GetObject on {thumbnail} as {DRIVER_ROLE}: that role needs {NEEDS}"
    proxy.clear_rules()
    assert materialize(ALL_ASSETS, selection=[raw_images], instance=dagster_instance, partition_key="Banana",
                       resources=res).success

    # An executor (its own role) fetches an image the driver listed; S3 refuses it.
    refused = images[7]
    proxy.add_rule(ACCESS_DENIED, method="GET", key=f"{refused.split('/', 3)[3]}$")
    with spark_tasks_with(spark, AWS_ENDPOINT_URL=proxy.endpoint, AWS_ROLE_ARN=EXECUTOR_ROLE):
        in_task = materialize(ALL_ASSETS, selection=[image_embeddings], instance=dagster_instance,
                              partition_key="Banana", resources=res, raise_on_error=False)
    message = one_line_failure(in_task, dagster_instance, "image_embeddings", s3_server)
    assert message == f"access denied: s3:GetObject on {refused} as {EXECUTOR_ROLE}: that role needs {NEEDS}"
    assert {r.status for r in proxy.requests(method="GET", key=f"{refused.split('/', 3)[3]}$")} == {403}
    # Nothing published: no embeddings, and no quarantine that would call the image vanished.
    published = committed(DataLayout.at(root))
    assert published["embeddings"]["table"] is None and published["quarantine"]["table"] is None
