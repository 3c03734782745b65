"""docker/entrypoint.sh's executor role, run by bash on the host with a `java` that prints the
command line it was given: every SPARK_JAVA_OPT_<n> arrives, in numeric order, each value one
argument. (test_container_image.py starts the role for real, from the pod Spark builds.)"""

import os
import subprocess

from fruit_assets_tests.harness import REPO

ENTRYPOINT = os.path.join(REPO, "docker", "entrypoint.sh")


def executor_command(tmp_path, **env: str) -> list[str]:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text('#!/bin/sh\nfor argument in "$@"; do printf "%s\\n" "$argument"; done\n')
    java.chmod(0o755)
    base = {"PATH": "/usr/bin:/bin", "JAVA_HOME": str(tmp_path / "jdk"), "SPARK_HOME": "/opt/spark",
            "SPARK_EXECUTOR_MEMORY": "1024m", "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.0.3.7:7078",
            "SPARK_EXECUTOR_ID": "3", "SPARK_EXECUTOR_CORES": "2", "SPARK_APPLICATION_ID": "spark-1",
            "SPARK_EXECUTOR_POD_IP": "10.0.9.9", "SPARK_RESOURCE_PROFILE_ID": "0", "SPARK_EXECUTOR_POD_NAME": "exec-3"}
    result = subprocess.run(["bash", ENTRYPOINT, "executor"], env={**base, **env}, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_every_spark_java_option_reaches_the_executor_jvm_in_numeric_order(tmp_path):
    options = {f"SPARK_JAVA_OPT_{n}": f"-Dspark.option{n}=value {n}" for n in (0, 1, 2, 9, 10, 11)}
    command = executor_command(tmp_path, **options, SPARK_JAVA_OPT_NAME="-Dnot=an-option")
    assert command[:6] == [f"-Dspark.option{n}=value {n}" for n in (0, 1, 2, 9, 10, 11)]
    assert command[6:8] == ["-Xms1024m", "-Xmx1024m"] and "-Dnot=an-option" not in command
    assert command[command.index("--driver-url") + 1] == "spark://CoarseGrainedScheduler@10.0.3.7:7078"
    assert command[command.index("--hostname") + 1] == "10.0.9.9"
    assert command[command.index("--podName") + 1] == "exec-3"


def test_class_path_additions_spark_hands_over_are_kept(tmp_path):
    command = executor_command(tmp_path, SPARK_CLASSPATH="/opt/extra/a.jar", SPARK_CONF_DIR="/opt/spark/conf")
    assert command[command.index("-cp") + 1] == "/opt/spark/conf:/opt/extra/a.jar:/opt/spark/jars/*"
    assert executor_command(tmp_path / "bare")[0] == "-Xms1024m"  # no options at all: none invented
