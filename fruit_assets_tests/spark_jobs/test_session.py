"""The Spark configuration for local, standalone and Kubernetes masters (no new session is started)."""

import sys

import pytest

from fruit_assets.errors import ConfigurationError, RunConfigNotAllowed, user_facing_message
from fruit_assets.spark_jobs.kubernetes import KubernetesSettings, kubernetes_conf
from fruit_assets.spark_jobs.network_security import NETWORK_SECURITY_CONF, SHARED_KEY_SETTING, read_auth_secret
from fruit_assets.spark_jobs.run_conf import RUN_CONFIG_SPARK_KEYS, run_sizing_conf
from fruit_assets.spark_jobs.session import SparkSettings, session_conf

K8S = KubernetesSettings(namespace="fruits", service_account="fruit-assets-spark", image="registry.example/fruit:1.2",
                         driver_pod_name="dagster-run-abc", driver_pod_ip="10.1.2.3")


def test_a_local_master_binds_the_driver_to_loopback(monkeypatch):
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/venv/bin/python")
    conf = session_conf(SparkSettings(master="local[2]"))
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.python.worker.reuse"] == "true"
    assert conf["spark.pyspark.python"] == "/opt/venv/bin/python"
    assert conf["spark.pyspark.driver.python"] == sys.executable
    assert not any("FRUIT_ASSETS_SPARK_WORKER" in key for key in conf)  # the package imports no Dagster


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
    # Spark hands executors the bind address (useDriverPodIP): it must be the pod IP, not 0.0.0.0.
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "10.1.2.3"
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


def test_kubernetes_executors_get_their_own_service_account_when_the_deployment_names_one():
    conf = kubernetes_conf(KubernetesSettings(**{**K8S.__dict__, "executor_service_account": "fruit-assets-executor"}))
    assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == "fruit-assets-executor"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "fruit-assets-spark"


def test_kubernetes_sizes_and_ports_come_from_the_settings():
    conf = kubernetes_conf(KubernetesSettings(**{**K8S.__dict__, "executor_cores": 4, "max_executors": 3,
                                                 "min_executors": 1, "driver_port": 9000, "block_manager_port": 9001,
                                                 "pod_template": "/etc/template.yaml", "executor_memory": "6g"}))
    assert conf["spark.executor.cores"] == conf["spark.kubernetes.executor.limit.cores"] == "4"
    assert (conf["spark.dynamicAllocation.minExecutors"], conf["spark.dynamicAllocation.maxExecutors"]) == ("1", "3")
    assert (conf["spark.driver.port"], conf["spark.driver.blockManager.port"]) == ("9000", "9001")
    assert conf["spark.kubernetes.executor.podTemplateFile"] == "/etc/template.yaml"
    assert conf["spark.executor.memory"] == "6g"


def test_kubernetes_traffic_is_authenticated_and_encrypted_with_the_secret_spark_generates():
    conf = session_conf(SparkSettings(master="k8s://https://kubernetes.default.svc", conf=kubernetes_conf(K8S)))
    assert conf["spark.authenticate"] == conf["spark.network.crypto.enabled"] == "true"
    assert conf["spark.network.crypto.cipher"] == "AES/GCM/NoPadding"
    assert conf["spark.network.crypto.saslFallback"] == "false"
    # Spark makes one per application and gives it to the executor pods; a fixed one would be shared by all.
    assert not any(key.startswith(SHARED_KEY_SETTING) for key in conf)


def test_a_standalone_cluster_s_traffic_is_secured_when_its_secret_file_is_set(tmp_path):
    secured = session_conf(SparkSettings(master="spark://spark-master:7077", auth_secret_file=str(tmp_path / "s")))
    assert {k: secured[k] for k in NETWORK_SECURITY_CONF} == NETWORK_SECURITY_CONF
    assert SHARED_KEY_SETTING not in secured  # set on the JVM by build_spark_session, never in a dict like this one
    assert "spark.authenticate" not in session_conf(SparkSettings(master="spark://spark-master:7077"))


def test_a_local_master_has_no_network_to_secure(tmp_path):
    conf = session_conf(SparkSettings(master="local[2]", auth_secret_file=str(tmp_path / "s")))
    assert "spark.authenticate" not in conf and "spark.network.crypto.enabled" not in conf


def test_no_conf_turns_network_security_off():
    conf = session_conf(SparkSettings(master="k8s://https://kubernetes.default.svc", conf={
        "spark.authenticate": "false", "spark.network.crypto.enabled": "false"}))
    assert conf["spark.authenticate"] == conf["spark.network.crypto.enabled"] == "true"


def test_the_secret_file_is_read_and_a_bad_one_named_without_its_content(tmp_path):
    good = tmp_path / "secret"
    good.write_text("  0123abcd\n")
    assert read_auth_secret(str(good)) == "0123abcd"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, reason in ((tmp_path / "missing", "cannot be read (No such file or directory)"), (empty, "is empty")):
        with pytest.raises(ConfigurationError) as raised:
            read_auth_secret(str(path))
        assert str(raised.value).startswith(f"FRUIT_SPARK_AUTH_SECRET_FILE={path} {reason}")


@pytest.mark.parametrize("key", [
    "spark.kubernetes.container.image", "spark.kubernetes.authenticate.executor.serviceAccountName",
    "spark.kubernetes.executor.podTemplateFile", "spark.kubernetes.executor.volumes.hostPath.root.mount.path",
    "spark.master", "spark.driver.host", "spark.authenticate", "spark.network.crypto.enabled",
    "spark.executorEnv.AWS_ROLE_ARN", "spark.executor.extraJavaOptions", "spark.jars.packages", "spark.plugins",
    "spark.redaction.regex", "spark.eventLog.dir", "spark.hadoop.fs.s3a.aws.credentials.provider",
])
def test_run_config_outside_the_sizing_allowlist_is_refused_in_one_line(key):
    with pytest.raises(RunConfigNotAllowed) as raised:
        run_sizing_conf({key: "x", "spark.executor.memory": "2g"})
    message = user_facing_message(raised.value)
    assert message.startswith(f"run config may not set {key} on the Spark resource: only the sizing keys ")
    assert "\n" not in message and all(allowed in message for allowed in RUN_CONFIG_SPARK_KEYS)


def test_the_sizing_allowlist_takes_sizes_and_counts_and_never_repeats_a_refused_value():
    sizing = {"spark.executor.memory": "4g", "spark.driver.memory": "1536m", "spark.executor.memoryOverhead": "1024",
              "spark.executor.cores": "2", "spark.sql.shuffle.partitions": "64", "spark.dynamicAllocation.maxExecutors": "3"}
    assert run_sizing_conf(sizing) == sizing
    # Run config can fill a value from any of the run pod's variables ({env: ...}): it is never echoed.
    for key, value in (("spark.executor.memory", "hunter2-secret"), ("spark.executor.cores", "2 -Dx=y")):
        with pytest.raises(RunConfigNotAllowed) as raised:
            run_sizing_conf({key: value})
        assert str(raised.value).startswith(f"run config sets {key} to something other than ")
        assert value not in str(raised.value)
