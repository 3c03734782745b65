"""The JVM side of a job group's cost, read from Spark's own status store (real Spark)."""

import os
import subprocess
import sys
import textwrap
import types
import uuid

import pytest

from fruit_assets.spark_jobs.task_metrics import JvmTaskTime, group_task_time, python_cpu_time


BURN = """
def burn(_index, _rows):
    # A Python task that spends about 0.3 CPU-seconds; -> its Python worker's CPU time.
    from fruit_assets.spark_jobs.task_metrics import python_cpu_time

    started = python_cpu_time()
    total = 0
    while python_cpu_time() - started < 0.3:
        total += sum(range(1000))
    return [python_cpu_time() - started]
"""


def burner():
    """``burn``, defined here (pickled by value: the Python workers need not import this module)."""
    namespace = {}
    exec(BURN, namespace)  # noqa: S102 - our own constant
    return namespace["burn"]


def test_a_group_s_jvm_task_time_is_read_from_the_status_store(spark):
    sc = spark.sparkContext
    burn = burner()
    group = f"test-task-metrics-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, "task metrics test")
    try:
        python_seconds = sc.parallelize(range(2), 2).mapPartitionsWithIndex(burn).collect()
        sc.parallelize(range(2), 2).mapPartitionsWithIndex(burn).collect()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    jvm = group_task_time(sc, group)
    assert isinstance(jvm, JvmTaskTime) and jvm.stages == 2
    # The JVM task thread runs while the Python worker works: its run time covers the Python CPU;
    # its own CPU is > 0 and small (it mostly waits on the worker's socket).
    assert jvm.cpu_seconds > 0
    assert jvm.run_seconds >= 0.9 * sum(python_seconds)
    # A group with no job costs nothing; no other group's jobs are counted.
    assert group_task_time(sc, f"no-such-group-{uuid.uuid4().hex[:8]}") == JvmTaskTime(0.0, 0.0, 0)


def test_an_unreadable_status_store_gives_none_never_an_error():
    assert group_task_time(types.SimpleNamespace(_jsc=None), "any", wait_seconds=0.1) is None


def test_python_cpu_time_counts_every_thread_of_the_process():
    from concurrent.futures import ThreadPoolExecutor

    def spin():
        started = python_cpu_time()
        while python_cpu_time() - started < 0.2:
            pass

    before = python_cpu_time()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: spin(), range(2)))
    assert python_cpu_time() - before >= 0.2


@pytest.mark.slow
def test_the_status_store_is_read_with_the_spark_ui_disabled(tmp_path):
    """The test session runs with the UI on (Spark's default); deployments may turn it off."""
    script = BURN + textwrap.dedent("""
        from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session
        from fruit_assets.spark_jobs.task_metrics import group_task_time

        session = build_spark_session(SparkSettings(master="local[1]", conf={"spark.ui.enabled": "false"}))
        sc = session.sparkContext
        assert sc.uiWebUrl is None
        sc.setJobGroup("no-ui", "task metrics without the UI")
        sc.parallelize(range(1), 1).mapPartitionsWithIndex(burn).collect()
        jvm = group_task_time(sc, "no-ui")
        print("JVM", jvm)
        assert jvm is not None and jvm.stages == 1 and jvm.cpu_seconds > 0 and jvm.run_seconds > 0.25, jvm
        session.stop()
    """)
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "JVM JvmTaskTime(" in done.stdout
