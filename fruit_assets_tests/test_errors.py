"""Which errors read as one line for the user, raised on the driver or inside a Spark task."""

from fruit_assets.errors import ConfigurationError, UserFacingError, user_facing_message
from fruit_assets.storage import StorageError


class BrandNewTestError(UserFacingError):
    """Defined here, after the package was imported: registered by being defined."""


def spark_like_trace(*exception_lines: str) -> RuntimeError:
    """What a Python task's failure looks like on the driver: a Java trace around the task's own."""
    return RuntimeError("\n".join([
        "An error occurred while calling z:org.apache.spark.api.python.PythonRDD.collectAndServe.",
        "org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 3.0 failed 1 times,"
        " most recent failure: Lost task 0.0 in stage 3.0 (TID 7) (127.0.0.1 executor driver):"
        " org.apache.spark.api.python.PythonException: Traceback (most recent call last):",
        '  File "/work/fruit_assets/spark_jobs/files.py", line 30, in task',
        *exception_lines,
        "\tat org.apache.spark.api.python.BasePythonRunner$ReaderIterator.handlePythonException(PythonRunner.scala:612)",
        "\tat org.apache.spark.scheduler.Task.run(Task.scala:147)",
    ]))


def test_a_new_subclass_is_recognised_directly_and_inside_a_task_trace():
    assert user_facing_message(BrandNewTestError("fix the thing")) == "fix the thing"
    trace = spark_like_trace("fruit_assets.some.module.BrandNewTestError: the message says what to do")
    assert user_facing_message(trace) == "the message says what to do"
    assert user_facing_message(spark_like_trace("BrandNewTestError: without a module")) == "without a module"


def test_the_package_errors_are_recognised_by_name_in_a_trace():
    assert user_facing_message(ConfigurationError("set X")) == "set X"
    assert user_facing_message(spark_like_trace("fruit_assets.storage.errors.StorageError: bucket b is gone")) \
        == "bucket b is gone"
    assert user_facing_message(spark_like_trace("fruit_assets.errors.ConfigurationError: FRUIT_X is wrong")) \
        == "FRUIT_X is wrong"


def test_other_errors_are_bugs_and_give_none():
    assert user_facing_message(RuntimeError("boom")) is None
    assert user_facing_message(KeyError("StorageError")) is None
    assert user_facing_message(ValueError("not a ConfigurationError: x")) is None  # not at a line start
    assert user_facing_message(spark_like_trace("ZeroDivisionError: division by zero")) is None
    assert user_facing_message(spark_like_trace("mypackage.NotRegisteredError: nope")) is None
    # Another library's class of the same name as ours is not ours; our base class is.
    assert user_facing_message(spark_like_trace("otherlib.config.ConfigurationError: theirs")) is None
    assert user_facing_message(spark_like_trace("fruit_assets.errors.UserFacingError: ours")) == "ours"


def test_the_last_matching_line_wins():
    trace = spark_like_trace(
        "fruit_assets.storage.errors.StorageError: the first, wrapped one",
        "During handling of the above exception, another exception occurred:",
        "fruit_assets.some.module.BrandNewTestError: the one raised last  ",
    )
    assert user_facing_message(trace) == "the one raised last"


def test_a_real_spark_task_failure_reads_as_the_message_raised_in_the_task(spark):
    def raise_it(_):
        from fruit_assets.storage import StorageError as RaisedInTheTask

        raise RaisedInTheTask("bucket x is unknown")

    try:
        spark.sparkContext.parallelize([1], 1).map(raise_it).collect()
    except Exception as error:  # noqa: BLE001 - whatever Py4J/PySpark wraps it in
        assert not isinstance(error, StorageError)  # the driver gets Spark's wrapper, not the task's error
        assert "Traceback" in str(error)
        assert user_facing_message(error) == "bucket x is unknown"
    else:
        raise AssertionError("the task's StorageError did not fail the job")


def test_transient_errors_are_told_apart_directly_and_inside_a_task_trace():
    from fruit_assets.errors import TransientError, is_transient
    from fruit_assets.storage import TransientStorageError

    assert is_transient(TransientStorageError("S3 kept throttling"))
    assert issubclass(TransientStorageError, StorageError) and issubclass(TransientStorageError, TransientError)
    assert not is_transient(StorageError("bucket b is gone")) and not is_transient(ConfigurationError("set X"))
    assert not is_transient(RuntimeError("boom"))  # a bug: no user-facing class at all
    trace = spark_like_trace("fruit_assets.storage.errors.TransientStorageError: S3 kept answering SlowDown")
    assert is_transient(trace) and user_facing_message(trace) == "S3 kept answering SlowDown"
    # The error raised last decides, as for the message.
    assert not is_transient(spark_like_trace(
        "fruit_assets.storage.errors.TransientStorageError: throttled first",
        "During handling of the above exception, another exception occurred:",
        "fruit_assets.storage.errors.StorageError: then the bucket was gone",
    ))
    assert not is_transient(spark_like_trace("otherlib.TransientStorageError: not ours"))
