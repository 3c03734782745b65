#!/usr/bin/env bash
# One image, three roles. Spark on Kubernetes starts executors with the argument "executor";
# anything else (the code server, the run pod's `dagster api execute_run`, a standalone Spark
# worker's `spark-class ...`) runs as given.
#
# An executor pod is described by its environment alone (Spark's BasicExecutorFeatureStep): every
# spark.* setting the executor needs before it can reach its driver (spark.authenticate, the
# spark.network.crypto.* settings, the driver's ports) arrives as SPARK_JAVA_OPT_0 .. _N, the
# authentication secret as _SPARK_AUTH_SECRET (Spark's SecurityManager reads it from the
# environment, so it never appears on a command line), spark.executor.extraClassPath as
# SPARK_CLASSPATH. Dropping any of the options leaves an executor that a driver requiring
# authentication and AES-GCM refuses (fruit_assets_tests/test_container_image.py starts this role
# from the pod Spark's own code builds).
set -euo pipefail

# SPARK_JAVA_OPT_<n> values in numeric order (_10 after _9), NUL-separated: each value is one
# JVM argument, spaces and all.
executor_java_opts() {
  local name
  compgen -v SPARK_JAVA_OPT_ | grep -E '^SPARK_JAVA_OPT_[0-9]+$' | sort -t_ -k4,4n | while read -r name; do
    printf '%s\0' "${!name}"
  done
}

if [ "${1:-}" = "executor" ]; then
  mapfile -d '' -t java_opts < <(executor_java_opts)
  # Spark's conf dir (log4j settings a pod may mount) first, then extra class path entries.
  classpath="${SPARK_CONF_DIR:+$SPARK_CONF_DIR:}${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*"
  classpath+="${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}${SPARK_DIST_CLASSPATH:+:$SPARK_DIST_CLASSPATH}"
  exec "$JAVA_HOME/bin/java" "${java_opts[@]}" -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
    -cp "$classpath" org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
    --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" --podName "${SPARK_EXECUTOR_POD_NAME:-}"
fi
exec "$@"
