#!/usr/bin/env bash
# One image, three roles. Spark on Kubernetes starts executors with the argument "executor";
# anything else (the code server, the run pod's `dagster api execute_run`, a standalone Spark
# worker's `spark-class ...`) runs as given.
set -euo pipefail
if [ "${1:-}" = "executor" ]; then
  # As Spark's own image entrypoint does for executors.
  exec java -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" ${SPARK_JAVA_OPT_0:-} -cp "$SPARK_HOME/jars/*" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
    --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" --podName "${SPARK_EXECUTOR_POD_NAME:-}"
fi
exec "$@"
