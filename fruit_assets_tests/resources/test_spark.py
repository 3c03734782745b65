"""Run config sizes a run's Spark, the deployment decides where and as whom it runs: real Dagster
runs (each step in a fresh process of its own, so each run builds its own Spark session)."""

import os

import pytest
from dagster import (
    DagsterEventType,
    DagsterInvalidConfigError,
    Definitions,
    MaterializeResult,
    asset,
    define_asset_job,
    execute_job,
    multiprocess_executor,
    reconstructable,
    validate_run_config,
)

from fruit_assets.resources import SparkResource
from fruit_assets.spark_jobs.history import local_event_log_dir
from fruit_assets.spark_jobs.run_conf import RUN_CONFIG_SPARK_KEYS


@asset
def spark_conf_seen(spark: SparkResource) -> MaterializeResult:
    session = spark.get_session()
    return MaterializeResult(metadata={
        "shuffle_partitions": session.conf.get("spark.sql.shuffle.partitions"),
        "executor_memory": session.sparkContext.getConf().get("spark.executor.memory", ""),
        "application_id": session.sparkContext.applicationId,
    })


def spark_conf_job():
    return Definitions(
        assets=[spark_conf_seen],
        resources={"spark": SparkResource(master="local[1]")},
        jobs=[define_asset_job("spark_conf_job", [spark_conf_seen])],
        executor=multiprocess_executor,
    ).resolve_job_def("spark_conf_job")


def run_with_spark_config(instance, config: dict):
    result = execute_job(reconstructable(spark_conf_job), instance=instance,
                         run_config={"resources": {"spark": {"config": config}}}, raise_on_error=False)
    return result.success, [event.dagster_event for event in instance.all_logs(result.run_id) if event.dagster_event]


def test_a_spark_key_outside_the_allowlist_fails_the_run_at_resource_init(dagster_instance, tmp_path):
    root = str(tmp_path / "data")
    success, events = run_with_spark_config(dagster_instance, {"data_uri": root, "conf": {
        "spark.kubernetes.container.image": "registry.example/evil:latest",
        "spark.sql.shuffle.partitions": "7",  # allowed, but the run is refused as a whole
    }})

    assert not success
    [failure] = [e for e in events if e.event_type == DagsterEventType.RESOURCE_INIT_FAILURE]
    message = failure.event_specific_data.error.message.strip()
    assert message.startswith("fruit_assets.errors.RunConfigNotAllowed: run config may not set "
                              "spark.kubernetes.container.image on the Spark resource: only the sizing keys ")
    assert "\n" not in message and "spark.sql.shuffle.partitions" in message and "spark.executor.memory" in message
    # Spark never started: the step body never ran, and no session wrote an event log.
    assert not any(e.event_type == DagsterEventType.STEP_START for e in events)
    assert not any(e.event_type == DagsterEventType.ASSET_MATERIALIZATION for e in events)
    assert not os.path.exists(local_event_log_dir(root)) and not os.path.exists(os.path.join(root, "spark-events"))


def test_an_allowlisted_key_reaches_the_run_s_spark_session(dagster_instance, tmp_path):
    root = str(tmp_path / "data")
    success, events = run_with_spark_config(dagster_instance, {"data_uri": root, "conf": {
        "spark.sql.shuffle.partitions": "7", "spark.executor.memory": "1536m"}})

    assert success
    [materialization] = [e for e in events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION]
    metadata = {k: v.value for k, v in materialization.event_specific_data.materialization.metadata.items()}
    assert metadata["shuffle_partitions"] == "7" and metadata["executor_memory"] == "1536m"
    # The session was this run's own (its event log is in the data root), not one found running.
    assert os.path.isdir(os.path.join(root, "spark-events", f"eventlog_v2_{metadata['application_id']}"))


def project_job():
    from fruit_assets.definitions import defs

    return defs.resolve_job_def("embed_classes")


@pytest.mark.parametrize("field", ["master", "k8s_namespace", "k8s_service_account", "k8s_executor_service_account",
                                   "k8s_image", "k8s_driver_pod_name", "k8s_driver_pod_ip", "auth_secret_file",
                                   "deployment", "app_name"])
def test_the_project_s_run_config_cannot_name_where_or_as_whom_spark_runs(field):
    with pytest.raises(DagsterInvalidConfigError, match=f'unexpected config entry "{field}" at path root:resources:spark:config'):
        validate_run_config(project_job(), {"resources": {"spark": {"config": {field: "spark://attacker:7077"}}}})


def test_the_project_s_run_config_sizes_spark():
    sizing = {"conf": {key: "2" for key in RUN_CONFIG_SPARK_KEYS},
              "k8s_executor_cores": 4, "k8s_executor_memory": "6g", "k8s_max_executors": 3}
    validated = validate_run_config(project_job(), {"resources": {"spark": {"config": sizing}}})
    assert validated["resources"]["spark"]["config"]["k8s_executor_memory"] == "6g"


def test_the_deployment_comes_from_the_environment_and_code_may_pin_it(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "k8s://https://kubernetes.default.svc")
    for variable, value in {"SPARK_K8S_NAMESPACE": "fruits", "SPARK_K8S_SERVICE_ACCOUNT": "fruit-assets-run",
                            "SPARK_K8S_EXECUTOR_SERVICE_ACCOUNT": "fruit-assets-executor",
                            "SPARK_K8S_IMAGE": "registry.example/fruit:1.2", "POD_NAME": "dagster-run-abc",
                            "POD_IP": "10.1.2.3"}.items():
        monkeypatch.setenv(variable, value)
    conf = SparkResource(k8s_executor_memory="6g", conf={"spark.executor.memoryOverhead": "2g"}).settings().conf
    assert conf["spark.kubernetes.container.image"] == "registry.example/fruit:1.2"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "fruit-assets-run"
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == "fruit-assets-executor"
    assert conf["spark.kubernetes.driver.pod.name"] == "dagster-run-abc" and conf["spark.driver.host"] == "10.1.2.3"
    assert (conf["spark.executor.memory"], conf["spark.executor.memoryOverhead"]) == ("6g", "2g")
    assert SparkResource(master="local[2]").settings().master == "local[2]"
