"""The Spark layer: distributes the pure functions of featurize/ and pca/. No Dagster.

Object I/O happens inside tasks through fruit_assets.storage (boto3 or local files), not through
Hadoop filesystems: the same code path serves file:// and s3:// (S3A jars are not assumed).
"""


def file_task_slices(spark_context, count: int) -> int:
    """Tasks for a job over ``count`` files: two per core (balance), never more than the files."""
    return max(1, min(count, spark_context.defaultParallelism * 2))
