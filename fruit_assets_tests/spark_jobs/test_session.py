"""The Spark configuration for local, standalone and Kubernetes masters (no new session is started)."""

import sys

import pytest

from fruit_assets.errors import ConfigurationError
from fruit_assets.spark_jobs.session import KubernetesSettings, SparkSettings, kubernetes_conf, session_conf

K8S = KubernetesSettings(namespace="fruits", service_account="fruit-assets-spark", image="registry.example/fruit:1.2",
                         driver_pod_name="dagster-run-abc", driver_pod_ip="10.1.2.3")


def test_a_local_master_binds_the_driver_to_loopback(monkeypatch):
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/venv/bin/python")
    conf = session_conf(SparkSettings(master="local[2]"))
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.python.worker.reuse"] == "true"
    assert conf["spark.pyspark.python"] == "/opt/venv/bin/python"
    assert conf["spark.pyspark.driver.python"] == sys.executable
    assert conf["spark.executorEnv.FRUIT_ASSETS_SPARK_WORKER"] == "1"


def test_other_masters_leave_the_driver_address_to_spark(monkeypatch):
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    conf = session_conf(SparkSettings(master="spark://spark-master:7077"))
    assert "spark.driver.host" not in conf and "spark.driver.bindAddress" not in conf
    assert conf["spark.pyspark.python"] == sys.executable


def test_user_conf_wins_over_every_default():
    conf = session_conf(SparkSettings(master="local[2]", conf={
        "spark.driver.host": "192.168.0.5", "spark.python.worker.reuse": "false", "spark.executor.memory": "3g"}))
    assert conf["spark.driver.host"] == "192.168.0.5"
    assert conf["spark.python.worker.reuse"] == "false"
    assert conf["spark.executor.memory"] == "3g"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"


def test_the_test_session_was_built_with_this_configuration(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.python.worker.reuse") == "true"
    assert conf.get("spark.executorEnv.OMP_NUM_THREADS") == "1"


@pytest.mark.parametrize("missing", ["namespace", "service_account", "image", "driver_pod_name", "driver_pod_ip"])
def test_kubernetes_without_a_setting_names_it_and_the_variables_to_set(missing):
    settings = KubernetesSettings(**{**K8S.__dict__, missing: ""})
    with pytest.raises(ConfigurationError) as raised:
        kubernetes_conf(settings)
    message = str(raised.value)
    assert message.startswith(f"Spark on Kubernetes needs {missing}: ")
    for variable in ("SPARK_K8S_NAMESPACE", "SPARK_K8S_SERVICE_ACCOUNT", "SPARK_K8S_IMAGE", "POD_NAME", "POD_IP"):
        assert variable in message


def test_kubernetes_executors_reach_the_run_pod_on_fixed_ports(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    conf = kubernetes_conf(K8S)
    assert conf["spark.submit.deployMode"] == "client"
    assert conf["spark.kubernetes.namespace"] == "fruits"
    assert conf["spark.kubernetes.container.image"] == "registry.example/fruit:1.2"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "fruit-assets-spark"
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == "fruit-assets-spark"
    assert conf["spark.kubernetes.driver.pod.name"] == "dagster-run-abc"
    assert conf["spark.driver.host"] == "10.1.2.3" and conf["spark.driver.bindAddress"] == "0.0.0.0"
    assert (conf["spark.driver.port"], conf["spark.driver.blockManager.port"]) == ("7078", "7079")
    assert conf["spark.kubernetes.executor.podTemplateFile"] == "/opt/fruit_assets/executor-pod-template.yaml"
    assert conf["spark.kubernetes.executor.deleteOnTermination"] == "true"
    assert conf["spark.executor.cores"] == conf["spark.kubernetes.executor.request.cores"] == \
        conf["spark.kubernetes.executor.limit.cores"] == "2"
    assert (conf["spark.executor.memory"], conf["spark.executor.memoryOverhead"]) == ("1g", "1g")
    assert conf["spark.task.cpus"] == "1"
    assert conf["spark.dynamicAllocation.enabled"] == conf["spark.dynamicAllocation.shuffleTracking.enabled"] == "true"
    assert (conf["spark.dynamicAllocation.minExecutors"], conf["spark.dynamicAllocation.maxExecutors"]) == ("0", "10")
    assert conf["spark.executorEnv.AWS_REGION"] == "eu-west-3"


def test_kubernetes_sizes_and_ports_come_from_the_settings():
    conf = kubernetes_conf(KubernetesSettings(**{**K8S.__dict__, "executor_cores": 4, "max_executors": 3,
                                                 "min_executors": 1, "driver_port": 9000, "block_manager_port": 9001,
                                                 "pod_template": "/etc/template.yaml", "executor_memory": "6g"}))
    assert conf["spark.executor.cores"] == conf["spark.kubernetes.executor.limit.cores"] == "4"
    assert (conf["spark.dynamicAllocation.minExecutors"], conf["spark.dynamicAllocation.maxExecutors"]) == ("1", "3")
    assert (conf["spark.driver.port"], conf["spark.driver.blockManager.port"]) == ("9000", "9001")
    assert conf["spark.kubernetes.executor.podTemplateFile"] == "/etc/template.yaml"
    assert conf["spark.executor.memory"] == "6g"
