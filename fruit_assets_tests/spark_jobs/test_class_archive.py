"""The driver JVM's class archive: recorded once, then Spark's classes are mapped from it; a partial,
foreign or locked archive never stops a session from starting. Each JVM is a process of its own (the
test process keeps the session fixture's JVM)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fruit_assets.spark_jobs.class_archive import (
    ARCHIVE_VARIABLE,
    RECORD,
    USE,
    archive_key,
    plan_archive,
)
from fruit_assets.spark_jobs.session import SparkSettings, session_conf

# A context with the product's builder, one job, the product's stop; prints what the JVM did.
SESSION_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_context, stop_spark
    extra = json.loads(sys.argv[1])
    context = build_spark_context(SparkSettings(master="local[1]", conf=extra))
    total = context.parallelize(range(10), 2).map(lambda x: x * x).sum()
    # What the JVM was started with (the archive's options are on its command line, not in the conf).
    runtime = context._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    options = " ".join(runtime.getInputArguments())
    recorded = stop_spark(context)
    for thread in threading.enumerate():
        if thread.name == "accumulator-server-stop":
            thread.join(10)
    serving = [t.name for t in threading.enumerate() if "serve_forever" in repr(getattr(t, "_target", ""))]
    print("RESULT " + json.dumps({"sum": total, "options": options, "recorded": recorded, "serving": serving}))
    """
)


def run_session(folder: str, log: str = "", cwd: str | None = None) -> dict:
    extra = {"spark.driver.extraJavaOptions": f"-Xlog:class+load=info:file={log}"} if log else {}
    env = {**os.environ, ARCHIVE_VARIABLE: folder}
    done = subprocess.run([sys.executable, "-c", SESSION_SCRIPT, json.dumps(extra)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def loaded_from_archive(log: str, class_name: str) -> bool:
    with open(log) as handle:
        return any(f" {class_name} source: shared objects file (top)" in line for line in handle)


CONF = session_conf(SparkSettings(master="local[1]"))


@pytest.mark.slow
def test_the_first_jvm_records_the_archive_and_the_next_maps_sparks_classes_from_it(tmp_path):
    folder = str(tmp_path / "archive")
    first = run_session(folder, str(tmp_path / "first.log"))
    assert first["sum"] == 285
    assert f"-XX:ArchiveClassesAtExit={folder}/" in first["options"]
    recorded = first["recorded"]
    assert recorded and os.path.dirname(recorded) == folder
    assert recorded.endswith(f".{os.path.getsize(recorded)}.jsa")  # the size it must have, in its name
    assert sorted(os.listdir(folder)) == [os.path.basename(recorded)]  # no temporary file, no lock left
    assert not loaded_from_archive(str(tmp_path / "first.log"), "org.apache.spark.SparkContext")
    assert first["serving"] == []  # the accumulator server stopped, in the background

    second = run_session(folder, str(tmp_path / "second.log"))
    assert second["sum"] == 285 and second["recorded"] is None
    assert f"-XX:SharedArchiveFile={recorded}" in second["options"]
    # The proof that sharing works: the JVM says where each class came from.
    assert loaded_from_archive(str(tmp_path / "second.log"), "org.apache.spark.SparkContext")
    assert loaded_from_archive(str(tmp_path / "second.log"), "org.apache.spark.api.python.PythonRDD")

    # A truncated archive under a name whose size matches (a copy cut short) crashes the JVM
    # (SIGBUS): the session starts without it, and it is gone.
    with open(recorded, "rb") as handle:
        head = handle.read(os.path.getsize(recorded) // 3)
    os.remove(recorded)
    truncated = os.path.join(folder, f"{archive_key(CONF)}.{len(head)}.jsa")
    with open(truncated, "wb") as handle:
        handle.write(head)
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    third = run_session(folder, cwd=str(workdir))
    assert third["sum"] == 285 and third["recorded"] is None
    assert f"-XX:SharedArchiveFile={truncated}" not in third["options"]
    assert not os.path.exists(truncated)
    # The crash it handled leaves no report behind in the working directory.
    assert os.listdir(workdir) == []


def test_an_archive_whose_size_differs_from_its_name_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv(ARCHIVE_VARIABLE, str(tmp_path))
    (tmp_path / f"{archive_key(CONF)}.999.jsa").write_bytes(b"x" * 10)
    plan = plan_archive(CONF)
    assert plan.mode == RECORD and plan.path.endswith(".tmp")
    (tmp_path / f"{archive_key(CONF)}.10.jsa").write_bytes(b"x" * 10)
    assert plan_archive(CONF).mode == USE  # a complete one wins over recording (the lock is not taken)


def test_one_jvm_records_at_a_time_and_an_abandoned_lock_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv(ARCHIVE_VARIABLE, str(tmp_path))
    first = plan_archive(CONF)
    assert first.mode == RECORD and os.path.exists(first.lock_path)
    assert plan_archive(CONF).mode == ""  # another JVM records it: this one starts without
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open(first.lock_path, "w") as handle:
        handle.write(f"{os.uname().nodename} {dead.stdout.strip()}\n")
    assert plan_archive(CONF).mode == RECORD  # its recorder is gone


def test_another_jar_set_or_driver_memory_is_another_archive():
    assert archive_key(CONF) != archive_key({**CONF, "spark.driver.memory": "8g"})
    assert archive_key(CONF) != archive_key({**CONF, "spark.jars": "/opt/extra.jar"})
    assert archive_key(CONF) == archive_key(dict(CONF))


def test_off_and_an_unwritable_folder_start_without_an_archive(tmp_path, monkeypatch):
    monkeypatch.setenv(ARCHIVE_VARIABLE, "off")
    assert plan_archive(CONF).java_options == ""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(ARCHIVE_VARIABLE, str(tmp_path / "a-file" / "archive"))  # no folder can be made there
    assert plan_archive(CONF).mode == ""


def test_a_jvm_launched_for_nothing_ends_at_once_without_recording_or_a_lock(tmp_path):
    """What `fruit-assets materialize` does when nothing changed: the JVM it started early goes."""
    script = textwrap.dedent(
        """
        import json
        from pyspark import SparkContext
        from fruit_assets.spark_jobs.session import SparkSettings, launch_driver_jvm, stop_unused_driver_jvm
        launch_driver_jvm(SparkSettings(master="local[1]"))
        process = SparkContext._gateway.proc
        stop_unused_driver_jvm()
        print("RESULT " + json.dumps({"exit": process.poll(), "gateway": SparkContext._gateway is None}))
        """
    )
    folder = tmp_path / "archive"
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, ARCHIVE_VARIABLE: str(folder)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["exit"] == -9 and result["gateway"]  # killed: no archive written at its exit
    assert os.listdir(folder) == []  # the recording lock released, no temporary file
