"""A run pod's driver for the executor contract test: ``python -m fruit_assets_tests.harness.k8s_driver
POD_FILE DRIVER_PORT BLOCK_MANAGER_PORT``.

It starts the product's Spark session with the driver side of its ``k8s://`` settings (the pod IP as
host and bind address, fixed ports, executor sizes, authentication and AES-GCM) on a scheduler
that starts no executor itself (a standalone master with no worker, from SPARK_MASTER and its
secret file), writes the executor pod Spark's Kubernetes code builds for this very application to
POD_FILE (the test starts it, as a kubelet would), then runs ``fruit-assets materialize`` on that
session, as a run pod does. Exit status: the command's."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import urllib.request

DRIVER_KEYS = ("spark.driver.host", "spark.driver.bindAddress", "spark.driver.port", "spark.driver.blockManager.port",
               "spark.executor.cores", "spark.executor.memory", "spark.executor.memoryOverhead", "spark.task.cpus")


def main(pod_file: str, driver_port: int, block_manager_port: int) -> int:
    from fruit_assets.cli.main import main as cli
    from fruit_assets.resources.spark import SparkResource
    from fruit_assets.spark_jobs.session import build_spark_session
    from fruit_assets_tests.harness.spark_k8s import driver_security_manager, executor_pod, product_conf, product_settings

    conf = product_conf(product_settings(driver_pod_ip="127.0.0.1", driver_port=driver_port,
                                         block_manager_port=block_manager_port))
    settings = SparkResource(data_uri=os.environ["FRUIT_DATA_URI"]).settings()
    session = build_spark_session(dataclasses.replace(
        settings, conf={**settings.conf, **{key: conf[key] for key in DRIVER_KEYS}}))
    sc = session.sparkContext
    pod = executor_pod(sc, conf, sc.applicationId, security_manager=driver_security_manager(sc))
    with open(pod_file + ".part", "w") as handle:
        json.dump(pod, handle)
    os.replace(pod_file + ".part", pod_file)
    try:
        status = cli(["materialize", "-q"])
        # Every executor the application ever had, with the tasks it ran (Spark's REST API).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/allexecutors", timeout=30) as answer:
            executors = {e["id"]: {"host_port": e["hostPort"], "tasks": e["totalTasks"]} for e in json.load(answer)}
        print("EXECUTORS " + json.dumps(executors), flush=True)
        return status
    finally:
        session.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
